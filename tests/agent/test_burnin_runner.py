"""Real gloo burn-ins through the runner: numbers per size, the data check, timeouts, throttling."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from agent.burnin.runner import BurnInJob, rank_env, run_burnin, worker_argv
from agent.burnin.spec import BurnInResult, bandwidths, bus_factor

pytest.importorskip("torch")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_nccl_tests_formula() -> None:
    assert bus_factor(8) == pytest.approx(1.75)
    algbw, busbw = bandwidths(1_000_000_000, 1.0, 4)
    assert algbw == pytest.approx(1.0)
    assert busbw == pytest.approx(1.5)


def test_single_node_two_ranks_measure_every_size() -> None:
    job = BurnInJob(sizes="256K,1M", warmup=1, iters=3, world_size=2, local_ranks=2,
                    master_port=_free_port(), timeout_s=60, backend="gloo")
    result = run_burnin(job)
    assert result.ok, result.error
    assert [s.bytes for s in result.sizes] == [256 << 10, 1 << 20]
    assert all(s.busbw_gbps > 0 and s.wrong == 0 for s in result.sizes)
    assert result.backend == "gloo" and result.world_size == 2


def test_two_nodes_two_ranks_each_agree_on_group_numbers() -> None:
    port = _free_port()
    jobs = [BurnInJob(sizes="1M", warmup=1, iters=3, world_size=4, rank_offset=2 * n,
                      local_ranks=2, master_port=port, timeout_s=90, backend="gloo")
            for n in range(2)]
    results: list[BurnInResult | None] = [None, None]

    def node(n: int) -> None:
        results[n] = run_burnin(jobs[n])

    threads = [threading.Thread(target=node, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None and r.ok for r in results), results
    a, b = results
    assert a is not None and b is not None
    assert a.world_size == 4
    assert a.sizes[0].busbw_gbps == pytest.approx(b.sizes[0].busbw_gbps)


def test_slowdown_knob_lowers_bandwidth() -> None:
    base = BurnInJob(sizes="4M", warmup=1, iters=4, world_size=2, local_ranks=2,
                     timeout_s=60, backend="gloo")
    fast = run_burnin(replace(base, master_port=_free_port()))
    slow = run_burnin(replace(base, master_port=_free_port(), options={"slowdown": "4"}))
    assert fast.ok and slow.ok
    assert slow.peak_busbw_gbps < fast.peak_busbw_gbps / 2


def test_hung_worker_is_killed_at_its_timeout() -> None:
    job = BurnInJob(sizes="1M", world_size=2, local_ranks=2, master_port=_free_port(),
                    timeout_s=4, backend="gloo", options={"hang": "1"})
    result = run_burnin(job)
    assert result.timed_out
    assert not result.ok
    assert "timeout" in result.error
    assert result.duration_s < 15


def test_missing_peer_fails_or_times_out_never_hangs() -> None:
    job = BurnInJob(sizes="1M", world_size=4, local_ranks=2, master_port=_free_port(),
                    timeout_s=5, backend="gloo")
    result = run_burnin(job)
    assert not result.ok
    assert result.duration_s < 20


# ---------------------------------------------------------------- rail alignment (pure)


@pytest.mark.parametrize(("rails", "expected"), [
    ("mlx5_0/1,mlx5_1/1,,mlx5_3/2", ["=mlx5_0:1", "=mlx5_1:1", None, "=mlx5_3:2"]),
    ("mlx5_0/1", ["=mlx5_0:1", None, None, None]),  # fewer rails than ranks
    ("mlx5_0,/1,mlx5_2/,", [None, None, None, None]),  # malformed entries pin nothing
    (None, [None, None, None, None]),  # no rails option: NCCL picks the HCAs itself
])
def test_each_local_rank_is_pinned_to_its_own_rail(
    rails: str | None, expected: list[str | None]
) -> None:
    job = BurnInJob(local_ranks=4, world_size=8, rank_offset=4,
                    options={"slowdown": "2"} | ({"rails": rails} if rails is not None else {}))
    envs = [rank_env(job, i, {"PATH": "/bin"}) for i in range(4)]
    assert [e.get("NCCL_IB_HCA") for e in envs] == expected
    assert [e["RANK"] for e in envs] == ["4", "5", "6", "7"]
    assert all(e["PATH"] == "/bin" for e in envs)


def test_an_hca_pinned_in_the_agents_environment_wins() -> None:
    job = BurnInJob(local_ranks=2, world_size=2, options={"rails": "mlx5_0/1,mlx5_1/1"})
    env = rank_env(job, 1, {"NCCL_IB_HCA": "=mlx5_7:1"})
    assert env["NCCL_IB_HCA"] == "=mlx5_7:1"
    assert "--rails" not in " ".join(worker_argv(job, Path("r.json")))  # not a worker flag
