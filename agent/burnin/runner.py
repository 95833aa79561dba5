"""Start the local ranks of a burn-in as subprocesses and bound them in time.

A hung worker is killed (its whole process group) at the deadline and reported as timed out;
the daemon is never blocked on it beyond the timeout. When nccl-tests' `all_reduce_perf` is on
PATH and asked for, the runner uses it instead and parses its table (agent/burnin/nccl_tests.py).

Rail alignment: a directive's `rails` option ("<device>/<port>" per local rank, comma-separated;
an empty entry: none known) pins local rank i to NIC rail i with `NCCL_IB_HCA="=<device>:<port>"`,
as for training ranks (agent/ranks/runner.py), so a cross-domain pair loads every rail. An
`NCCL_IB_HCA` already in the agent's environment wins. Gloo (CPU) ignores it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.burnin.spec import BurnInResult


@dataclass(frozen=True)
class BurnInJob:
    """This node's share of a burn-in group."""

    sizes: str = "1M,4M,16M,64M"
    warmup: int = 3
    iters: int = 10
    world_size: int = 1
    rank_offset: int = 0
    local_ranks: int = 1
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    timeout_s: float = 120.0
    backend: str = "auto"
    #: slowdown=3, hang=1 (test knobs); rails=mlx5_0/1,mlx5_1/1 (NIC rail per local rank)
    options: Mapping[str, str] = field(default_factory=dict)


def worker_argv(job: BurnInJob, result_file: Path, python: str = sys.executable) -> list[str]:
    """The command line of one worker rank."""
    argv = [python, "-m", "agent.burnin.worker", "--sizes", job.sizes,
            "--warmup", str(job.warmup), "--iters", str(job.iters),
            "--backend", job.backend, "--result-file", str(result_file)]
    if "slowdown" in job.options:
        argv += ["--slowdown", str(float(job.options["slowdown"]))]
    if job.options.get("hang") in ("1", "true"):
        argv.append("--hang")
    return argv


def rank_rail(job: BurnInJob, local_rank: int) -> str | None:
    """The `NCCL_IB_HCA` value pinning `local_rank` to its rail ("=mlx5_0:1"), or None when
    the job names no usable rail for it (no `rails` option, an empty or malformed entry)."""
    rails = job.options.get("rails", "").split(",")
    rail = rails[local_rank].strip() if 0 <= local_rank < len(rails) else ""
    device, sep, port = rail.partition("/")
    if not sep or not device or not port:
        return None
    return f"={device}:{port}"


def rank_env(job: BurnInJob, local_rank: int, base: Mapping[str, str]) -> dict[str, str]:
    """The torch rendezvous environment of one local rank (with its NIC rail, if given)."""
    env = dict(base)
    env.update(
        RANK=str(job.rank_offset + local_rank), LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(job.world_size), LOCAL_WORLD_SIZE=str(job.local_ranks),
        MASTER_ADDR=job.master_addr, MASTER_PORT=str(job.master_port),
        CUDA_VISIBLE_DEVICES=env.get("CUDA_VISIBLE_DEVICES", ""),
        OMP_NUM_THREADS="1",
    )
    if not env["CUDA_VISIBLE_DEVICES"]:
        del env["CUDA_VISIBLE_DEVICES"]
    hca = rank_rail(job, local_rank)
    if hca is not None:
        env.setdefault("NCCL_IB_HCA", hca)
    return env


def run_burnin(job: BurnInJob, cwd: Path | None = None,
               env: Mapping[str, str] | None = None) -> BurnInResult:
    """Run this node's ranks to completion or to the deadline; never raises for worker faults."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpufleet-burnin-") as tmp:
        result_file = Path(tmp) / "result.json"
        procs = _spawn(job, result_file, cwd, env if env is not None else os.environ)
        deadline = started + job.timeout_s
        timed_out = _wait_all(procs, deadline)
        duration = time.monotonic() - started
        if timed_out:
            return BurnInResult(backend=job.backend, world_size=job.world_size, timed_out=True,
                                error=f"burn-in exceeded its {job.timeout_s:.0f} s timeout; "
                                      "workers killed", duration_s=duration)
        failed = [(i, p.returncode) for i, p in enumerate(procs) if p.returncode != 0]
        if failed or not result_file.exists():
            tails = "; ".join(_tail(Path(tmp), i) for i, _ in failed)
            return BurnInResult(backend=job.backend, world_size=job.world_size,
                                error=f"ranks failed {failed}: {tails}"[:2000],
                                duration_s=duration)
        return BurnInResult.from_json(result_file.read_text())


def _spawn(job: BurnInJob, result_file: Path, cwd: Path | None,
           base_env: Mapping[str, str]) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(job.local_ranks):
        with open(result_file.parent / f"rank{i}.err", "wb") as err:  # file, not a pipe: no stall
            procs.append(subprocess.Popen(
                worker_argv(job, result_file), cwd=cwd, env=rank_env(job, i, base_env),
                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
            ))
    return procs


def _wait_all(procs: Sequence[subprocess.Popen[bytes]], deadline: float) -> bool:
    """Wait for every process; on the deadline kill them all. True when it timed out."""
    for proc in procs:
        remaining = deadline - time.monotonic()
        try:
            proc.wait(timeout=max(0.0, remaining))
        except subprocess.TimeoutExpired:
            kill_all(procs)
            return True
        if proc.returncode != 0:  # one rank died: the rest would hang in the collective
            kill_all(procs)
    return False


def kill_all(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGKILL each process group and reap it (bounded)."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _tail(tmp: Path, local_rank: int) -> str:
    err = (tmp / f"rank{local_rank}.err").read_bytes()[-4000:]
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    return f"rank {local_rank}: {lines[-1] if lines else 'no output'}"
