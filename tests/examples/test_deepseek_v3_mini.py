"""DeepSeek-V3-mini trained by real gloo ranks (plain subprocesses on loopback).

The key property: a run that loses a rank and restarts from its latest complete checkpoint
continues the exact loss trajectory (bitwise, on CPU) of a run that never failed.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("torch") is None:
    pytest.skip("torch is not importable: the training example needs it", allow_module_level=True)

from agent.ranks.progress import ProgressListener
from examples.deepseek_v3_mini.checkpoint import (
    latest_complete_checkpoint,
    list_checkpoints,
    read_complete_marker,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

REPO_ROOT = Path(__file__).resolve().parents[2]
STEPS = 12
BASE_ARGS = [
    "--steps", str(STEPS), "--ckpt-every", "3", "--keep", "2", "--seed", "7",
    "--ep-size", "2", "--dropout", "0.1", "--device", "cpu", "--pg-timeout-s", "30",
]  # fmt: skip
WAIT_S = 90.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Launch:
    """One attempt: a process per rank, outputs in files."""

    procs: list[subprocess.Popen[bytes]]
    logs: Path
    started: float = field(default_factory=time.monotonic)

    def wait(self, timeout_s: float = WAIT_S) -> list[int]:
        deadline = time.monotonic() + timeout_s
        codes = []
        for proc in self.procs:
            try:
                codes.append(proc.wait(timeout=max(deadline - time.monotonic(), 0.1)))
            except subprocess.TimeoutExpired:
                self.kill()
                pytest.fail(f"rank pid {proc.pid} still running after {timeout_s}s: {self.tail()}")
        return codes

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.procs:
            proc.wait(timeout=10)

    def stdout(self, rank: int) -> str:
        return (self.logs / f"rank{rank}.out").read_text()

    def stderr(self, rank: int) -> str:
        return (self.logs / f"rank{rank}.err").read_text()

    def steps(self) -> dict[int, float]:
        """Rank 0's per-step losses."""
        losses = {}
        for line in self.stdout(0).splitlines():
            record = json.loads(line)
            assert set(record) == {"step", "loss", "step_time_s"}
            losses[record["step"]] = record["loss"]
        return losses

    def events(self, rank: int, kind: str) -> list[dict[str, Any]]:
        found = []
        for line in self.stderr(rank).splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("event") == kind:
                    found.append(record)
        return found

    def tail(self) -> str:
        return " | ".join(self.stderr(r)[-600:] for r in range(len(self.procs)))


class Runner:
    """Starts ranks for one checkpoint directory and cleans up whatever is left."""

    def __init__(self, root: Path, socket_path: Path | None = None) -> None:
        self.root, self.socket_path = root, socket_path
        self.ckpt = root / "ckpt"
        self.launches: list[Launch] = []

    def launch(self, *extra: str, world: int = 2, args: list[str] | None = None) -> Launch:
        attempt = len(self.launches)
        logs = self.root / f"attempt{attempt}"
        logs.mkdir()
        port = free_port()
        procs = []
        for rank in range(world):
            env = dict(os.environ)
            env.update(
                RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                GPUFLEET_RUN_ID="dsv3-test", GPUFLEET_ATTEMPT=str(attempt),
                PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
            )  # fmt: skip
            if self.socket_path is not None:
                env["GPUFLEET_PROGRESS_SOCKET"] = str(self.socket_path)
            cmd = [sys.executable, "-m", "examples.deepseek_v3_mini.train"]
            cmd += [*(BASE_ARGS if args is None else args), "--ckpt-dir", str(self.ckpt), *extra]
            with (
                (logs / f"rank{rank}.out").open("wb") as out,
                (logs / f"rank{rank}.err").open("wb") as err,
            ):
                procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=out, stderr=err))
        launch = Launch(procs, logs)
        self.launches.append(launch)
        return launch

    def close(self) -> None:
        for launch in self.launches:
            launch.kill()


@pytest.fixture
def runner() -> Iterator[Runner]:
    root = Path(tempfile.mkdtemp(prefix="gfdsv3-"))
    run = Runner(root)
    try:
        yield run
    finally:
        run.close()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Reference:
    losses: dict[int, float]
    ckpt: Path
    progress: dict[tuple[str, int], list[int]]
    wall_s: float
    start_events: list[dict[str, Any]]


@pytest.fixture(scope="module")
def reference() -> Iterator[Reference]:
    """Run A: the uninterrupted 2-rank run every other test compares against."""
    root = Path(tempfile.mkdtemp(prefix="gfdsv3-ref-"))
    sock = root / "p.sock"
    seen: dict[tuple[str, int], list[int]] = {}

    def record(p: Any) -> None:
        seen.setdefault((p.run_id, p.rank), []).append(p.step)

    run = Runner(root, sock)
    try:
        with ProgressListener(sock, on_record=record) as listener:
            launch = run.launch()
            codes = launch.wait()
            wall = time.monotonic() - launch.started
            assert codes == [0, 0], launch.tail()
            deadline = time.monotonic() + 5
            while sum(map(len, seen.values())) < 2 * STEPS and time.monotonic() < deadline:
                time.sleep(0.02)
            assert listener.stats().invalid == 0
        starts = [launch.events(r, "start")[0] for r in (0, 1)]
        yield Reference(launch.steps(), run.ckpt, seen, wall, starts)
    finally:
        run.close()
        shutil.rmtree(root, ignore_errors=True)


def test_two_ranks_train_and_the_loss_falls(reference: Reference) -> None:
    losses = reference.losses
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert all(math.isfinite(v) for v in losses.values())
    first = sum(losses[s] for s in (1, 2, 3)) / 3
    last = sum(losses[s] for s in (STEPS - 2, STEPS - 1, STEPS)) / 3
    assert last < first - 0.3, losses
    for start in reference.start_events:
        assert (start["backend"], start["ep_size"], start["resumed_from"]) == ("gloo", 2, None)
    # every rank reported every step to the agent's socket, in order
    assert reference.progress == {
        ("dsv3-test", 0): list(range(1, STEPS + 1)),
        ("dsv3-test", 1): list(range(1, STEPS + 1)),
    }


def test_retention_keeps_the_last_complete_checkpoints(reference: Reference) -> None:
    entries = list_checkpoints(reference.ckpt)
    assert [(e.step, e.complete) for e in entries] == [(9, True), (12, True)]
    assert latest_complete_checkpoint(reference.ckpt) == (12, entries[-1].path)
    marker = read_complete_marker(entries[-1].path)
    assert (marker["step"], marker["world_size"], marker["ep_size"], marker["seed"]) == (
        12, 2, 2, 7,
    )  # fmt: skip
    assert {p.name for p in entries[-1].path.iterdir()} == {
        ".metadata", "__0_0.distcp", "__1_0.distcp", "COMPLETE",
    }  # fmt: skip


def test_restart_after_a_rank_failure_continues_the_exact_trajectory(
    reference: Reference, runner: Runner
) -> None:
    first = runner.launch("--fail-at-step", "8", "--fail-rank", "1")
    deadline = time.monotonic() + WAIT_S
    while first.procs[1].poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.procs[1].returncode == 17, first.tail()
    # Rank 0 finishes step 7 (rank 1 took part in it), then its step-8 collective fails; give
    # it a bounded moment to print step 7, then stop the survivor as a supervisor would.
    while first.procs[0].poll() is None and time.monotonic() < deadline:
        if '"step": 7,' in first.stdout(0):
            break
        time.sleep(0.02)
    first.kill()
    assert first.events(1, "fault")[0]["step"] == 8
    before = first.steps()
    assert max(before) == 7 and before == {s: reference.losses[s] for s in before}
    found = latest_complete_checkpoint(runner.ckpt)
    assert found is not None and found[0] == 6

    # Same command line: the injected fault is one-shot, so the restarted run goes through.
    second = runner.launch("--fail-at-step", "8", "--fail-rank", "1")
    assert second.wait() == [0, 0], second.tail()
    for rank in (0, 1):
        start = second.events(rank, "start")[0]
        assert (start["resumed_from"], start["rng_restored"]) == (6, True)
    after = second.steps()
    assert sorted(after) == list(range(7, STEPS + 1))
    for step in after:  # bitwise: same data position, same RNG, same optimizer state
        assert after[step] == reference.losses[step], (step, after[step], reference.losses[step])


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one_loadable(
    reference: Reference, runner: Runner
) -> None:
    first = runner.launch("--fail-in-save-at-step", "6", "--fail-rank", "1")
    codes = first.wait()
    assert codes[1] == 17 and codes[0] != 0, first.tail()
    torn = runner.ckpt / "step_00000006"
    assert torn.is_dir() and any(torn.iterdir()) and not (torn / "COMPLETE").exists()
    found = latest_complete_checkpoint(runner.ckpt)
    assert found is not None and found[0] == 3

    second = runner.launch("--fail-in-save-at-step", "6", "--fail-rank", "1")
    assert second.wait() == [0, 0], second.tail()
    assert second.events(0, "start")[0]["resumed_from"] == 3
    after = second.steps()
    assert sorted(after) == list(range(4, STEPS + 1))
    assert all(after[s] == reference.losses[s] for s in after)
    steps = [(e.step, e.complete) for e in list_checkpoints(runner.ckpt)]
    assert steps == [(9, True), (12, True)]


def test_a_hung_rank_stops_progress_but_stays_alive() -> None:
    root = Path(tempfile.mkdtemp(prefix="gfdsv3-hang-"))
    sock = root / "p.sock"
    run = Runner(root, sock)
    try:
        with ProgressListener(sock) as listener:
            launch = run.launch("--hang-at-step", "4", "--fail-rank", "1", "--ckpt-every", "0")

            def steps_now() -> dict[int, int]:
                return {k[1]: v.step for k, v in listener.latest().items()}

            deadline = time.monotonic() + WAIT_S
            while steps_now() != {0: 3, 1: 3} and time.monotonic() < deadline:
                assert all(p.poll() is None for p in launch.procs), launch.tail()
                time.sleep(0.05)
            assert steps_now() == {0: 3, 1: 3}
            while not launch.events(1, "fault") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert launch.events(1, "fault")[0]["kind"] == "hang"
            time.sleep(1.5)  # a healthy run does a step every few tens of ms
            assert steps_now() == {0: 3, 1: 3}
            assert [p.poll() for p in launch.procs] == [None, None]
            launch.kill()
            assert launch.procs[1].returncode == -signal.SIGKILL
    finally:
        run.close()
        shutil.rmtree(root, ignore_errors=True)


def test_expert_parallel_matches_replicated_experts(reference: Reference, runner: Runner) -> None:
    """EP=2 ships tokens over all-to-all; replicated experts compute the same function, so the
    losses agree up to float summation order."""
    args = list(BASE_ARGS)
    args[args.index("--ep-size") + 1] = "1"
    args[args.index("--steps") + 1] = "4"
    args[args.index("--ckpt-every") + 1] = "0"
    launch = runner.launch(args=args)
    assert launch.wait() == [0, 0], launch.tail()
    replicated = launch.steps()
    assert launch.events(0, "start")[0]["ep_size"] == 1
    for step in range(1, 5):
        assert replicated[step] == pytest.approx(reference.losses[step], rel=1e-4, abs=1e-5)


def test_one_rank_run_refuses_a_checkpoint_of_another_seed(runner: Runner) -> None:
    args = ["--steps", "3", "--ckpt-every", "3", "--seed", "7", "--device", "cpu"]
    first = runner.launch(world=1, args=args)
    assert first.wait() == [0], first.tail()
    assert sorted(first.steps()) == [1, 2, 3]
    other_seed = ["--steps", "6", "--ckpt-every", "3", "--seed", "8", "--device", "cpu"]
    second = runner.launch(world=1, args=other_seed)
    assert second.wait() == [2]
    assert "was written with --seed 7, not 8" in second.stderr(0)
    assert second.stdout(0) == ""
    found = latest_complete_checkpoint(runner.ckpt)
    assert found is not None and found[0] == 3  # the refused run changed nothing
