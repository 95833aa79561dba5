"""The rank runner starts real subprocesses with the rendezvous env and reports their exits."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from agent.link.types import RankAssignment, RankExit, StartRanks
from agent.ranks.runner import RankRunner, rank_env

PRINT_ENV = ("import os,sys; print(os.environ['RANK'], os.environ['WORLD_SIZE'], "
             "os.environ.get('NCCL_IB_HCA','')); sys.exit(int(os.environ['RANK']) % 2 * 3)")


def _spec(code: str, ranks: int = 2, run_id: str = "r1") -> StartRanks:
    return StartRanks(run_id=run_id, attempt=1, argv=(sys.executable, "-c", code), env={"X": "1"},
                      master_addr="127.0.0.1", master_port=29999, world_size=4,
                      ranks=tuple(RankAssignment(rank=2 + i, local_rank=i, gpu=i,
                                                 rail=f"mlx5_{i}/1") for i in range(ranks)))


def _collect(runner_exits: list[RankExit], count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while len(runner_exits) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_env_carries_rendezvous_rail_and_progress_socket() -> None:
    env = rank_env(_spec("pass"), local_rank=1, rank=3, rail="mlx5_1/1", base={"PATH": "/bin"},
                   progress_socket="/run/p.sock")
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("3", "1", "4")
    assert env["NCCL_IB_HCA"] == "=mlx5_1:1"
    assert env["GPUFLEET_PROGRESS_SOCKET"] == "/run/p.sock" and env["X"] == "1"
    assert env["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"


def test_exits_are_reported_with_codes_and_output(tmp_path: Path) -> None:
    exits: list[RankExit] = []
    lock = threading.Lock()

    def on_exit(e: RankExit) -> None:
        with lock:
            exits.append(e)

    runner = RankRunner(tmp_path, on_exit)
    try:
        assert runner.start(_spec(PRINT_ENV)) == 2
        _collect(exits, 2)
    finally:
        runner.close()
    by_rank = {e.rank: e for e in exits}
    assert by_rank[2].exit_code == 0 and by_rank[2].reason == "exited"
    assert by_rank[3].exit_code == 3 and by_rank[3].reason == "failed"
    assert "3 4 =mlx5_1:1" in by_rank[3].stderr_tail


def test_stop_kills_the_run_and_reports_stopped(tmp_path: Path) -> None:
    exits: list[RankExit] = []
    runner = RankRunner(tmp_path, exits.append)
    try:
        runner.start(_spec("import time; time.sleep(60)"))
        assert runner.running("r1") == 2
        t0 = time.monotonic()
        assert runner.stop("r1", 0, grace_s=2.0) == 2
        assert time.monotonic() - t0 < 5
        _collect(exits, 2)
        assert runner.running() == 0
    finally:
        runner.close()
    assert {e.reason for e in exits} == {"stopped"}


def test_closing_the_agent_reports_its_ranks_as_lost_to_the_shutdown(tmp_path: Path) -> None:
    exits: list[RankExit] = []
    runner = RankRunner(tmp_path, exits.append)
    runner.start(_spec("import time; time.sleep(60)"))
    assert runner.running("r1") == 2
    runner.close()  # every exit is reported before close returns: nothing to wait for
    assert sorted(e.rank for e in exits) == [2, 3]
    assert {e.reason for e in exits} == {"agent_stopped"}
    assert runner.running() == 0


def test_sigterm_ignoring_rank_is_killed_after_grace(tmp_path: Path) -> None:
    exits: list[RankExit] = []
    code = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    runner = RankRunner(tmp_path, exits.append)
    try:
        runner.start(_spec(code, ranks=1))
        time.sleep(0.3)
        runner.stop("r1", 1, grace_s=0.5)
        _collect(exits, 1)
    finally:
        runner.close()
    assert exits and exits[0].exit_code == -9
