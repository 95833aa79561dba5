"""Start, watch and stop the training ranks the controller places on this node.

Each rank is a subprocess in its own session (so a stop reaches its children too), with the
torch rendezvous environment, rail alignment (`NCCL_IB_HCA` = the rank's NIC rail) and the
progress socket. A watcher thread reports every exit once through `on_exit`, with the tail of
its stderr; exits the agent caused by a stop are reported with reason "stopped" (a StopRanks
from the controller) or "agent_stopped" (the agent itself shutting down: the run lost them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent.link.types import RankExit, StartRanks
from gpufleet_common.clock import Clock, SystemClock

POLL_S = 0.05
TAIL_BYTES = 4000
STOPPED = "stopped"
AGENT_STOPPED = "agent_stopped"


@dataclass
class _Rank:
    run_id: str
    attempt: int
    rank: int
    proc: subprocess.Popen[bytes]
    log: Path
    stop_reason: str = ""  # why the agent stopped it ("" = it ended by itself)


def rank_env(spec: StartRanks, local_rank: int, rank: int, rail: str,
             base: Mapping[str, str], progress_socket: str | None) -> dict[str, str]:
    """The environment of one rank (pure)."""
    env = dict(base)
    env.update(spec.env)
    env.update(
        RANK=str(rank), LOCAL_RANK=str(local_rank), WORLD_SIZE=str(spec.world_size),
        LOCAL_WORLD_SIZE=str(len(spec.ranks)), MASTER_ADDR=spec.master_addr,
        MASTER_PORT=str(spec.master_port), GPUFLEET_RUN_ID=spec.run_id,
        GPUFLEET_ATTEMPT=str(spec.attempt), TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1",
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    if rail and "/" in rail:
        device, port = rail.split("/", 1)
        env.setdefault("NCCL_IB_HCA", f"={device}:{port}")
    if progress_socket:
        env["GPUFLEET_PROGRESS_SOCKET"] = progress_socket
    return env


class RankRunner:
    """Owns the rank processes of this node."""

    def __init__(self, log_dir: Path, on_exit: Callable[[RankExit], None],
                 progress_socket: str | None = None, clock: Clock | None = None,
                 base_env: Mapping[str, str] | None = None) -> None:
        self.log_dir = log_dir
        self.on_exit = on_exit
        self.progress_socket = progress_socket
        self.clock = clock or SystemClock()
        self.base_env = dict(os.environ if base_env is None else base_env)
        self._ranks: list[_Rank] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="rank-watcher", daemon=True)
        self._watcher.start()

    def start(self, spec: StartRanks) -> int:
        """Start every rank of `spec` on this node; returns how many started. Ranks of the
        same run still running here (an earlier attempt a lost controller never stopped) are
        stopped first: a node never runs two attempts of one run on its GPUs."""
        if not spec.argv:
            raise ValueError("StartRanks has an empty command")
        self.stop(spec.run_id, 0, grace_s=5.0)
        run_dir = self.log_dir / spec.run_id / f"attempt-{spec.attempt}"
        run_dir.mkdir(parents=True, exist_ok=True)
        started = []
        for slot in spec.ranks:
            log = run_dir / f"rank-{slot.rank}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    list(spec.argv), cwd=spec.workdir or None, stdout=out, stderr=subprocess.STDOUT,
                    env=rank_env(spec, slot.local_rank, slot.rank, slot.rail, self.base_env,
                                 self.progress_socket),
                    start_new_session=True,
                )
            started.append(_Rank(spec.run_id, spec.attempt, slot.rank, proc, log))
        with self._lock:
            self._ranks.extend(started)
        return len(started)

    def stop(self, run_id: str, attempt: int = 0, grace_s: float = 5.0,
             reason: str = STOPPED) -> int:
        """SIGTERM the run's ranks (attempt 0 = all attempts), SIGKILL after `grace_s`; their
        exits are reported with `reason`. Returns how many were running."""
        with self._lock:
            victims = [r for r in self._ranks if r.run_id == run_id
                       and (attempt == 0 or r.attempt == attempt) and r.proc.poll() is None]
            for r in victims:
                r.stop_reason = reason
        for r in victims:
            _signal(r.proc, signal.SIGTERM)
        deadline = time.monotonic() + max(0.0, grace_s)
        for r in victims:
            with contextlib.suppress(subprocess.TimeoutExpired):
                r.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if r.proc.poll() is None:
                _signal(r.proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    r.proc.wait(timeout=5)
        return len(victims)

    def running(self, run_id: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self._ranks if r.proc.poll() is None
                       and (run_id is None or r.run_id == run_id))

    def close(self) -> None:
        """Stop every rank and the watcher; every exit is reported before this returns (the
        agent spools them: the controller learns the run lost these ranks, at once)."""
        for run_id in {r.run_id for r in self._ranks}:
            self.stop(run_id, 0, grace_s=2.0, reason=AGENT_STOPPED)
        self._stop.set()
        self._watcher.join(5)
        with self._lock:
            ended = [r for r in self._ranks if r.proc.poll() is not None]
            self._ranks = [r for r in self._ranks if r.proc.poll() is None]
        for r in ended:
            self._report(r)

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            with self._lock:
                ended = [r for r in self._ranks if r.proc.poll() is not None]
                self._ranks = [r for r in self._ranks if r.proc.poll() is None]
            for r in ended:
                self._report(r)

    def _report(self, r: _Rank) -> None:
        code = r.proc.returncode
        reason = r.stop_reason or ("exited" if code == 0 else "failed")
        with contextlib.suppress(Exception):  # a faulty callback must not kill the watcher
            self.on_exit(RankExit(run_id=r.run_id, attempt=r.attempt, rank=r.rank,
                                  exit_code=code, at=self.clock.time(), reason=reason,
                                  stderr_tail=_tail(r.log)))


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return ""
