"""The Slurm launcher backend of the supervisor: an attempt is one batch job.

`launch` submits the attempt with `sbatch` on the placement's nodes (`--nodelist`), keeping the
nodes gpufleet drained out (`--exclude`); `stop` cancels the job; `poll` reads the job's state:
COMPLETED means every rank exited 0, FAILED/CANCELLED (not by us) is a rank failure on the
node srun names first. A restart is a new submission on the new placement; the ranks resume from
the latest complete checkpoint by themselves. Fatal XIDs and drains still come from the agents
through the controller, exactly as with agent-launched ranks.

Rank progress: the batch script points every rank at its node's agent (the standing progress
socket, `BatchOptions.progress_socket`), and the agent forwards the steps on its stream like
those of ranks it started, so the supervisor sees progress (`sees_progress`) and finds hung
ranks within the run's hang timeout; stopping the attempt cancels the job. A site whose ranks
cannot reach an agent launches with `progress_socket=""` and `sees_progress=False` (then
Slurm's time limit and the collective timeouts bound a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from controller.slurm.commands import SlurmError
from controller.slurm.launcher import SlurmLauncher, TaskExit
from controller.slurm.model import JobPhase
from controller.supervisor.decide import Failure, FailureKind
from controller.supervisor.record import RunRecord

log = logging.getLogger(__name__)


class SlurmBackend:
    """Launches each attempt as a Slurm batch job through `SlurmLauncher`."""

    def __init__(self, launcher: SlurmLauncher, drained: Callable[[], list[str]],
                 clock_time: Callable[[], float], poll_s: float = 1.0,
                 sees_progress: bool = True) -> None:
        self.sees_progress = sees_progress  # ranks report to their node's agent
        self.launcher = launcher
        self.drained = drained  # nodes gpufleet holds out of service right now
        self.clock_time = clock_time
        self.poll_s = poll_s
        self._cancelled: set[str] = set()
        self._last_poll: dict[str, float] = {}

    async def launch(self, record: RunRecord) -> dict[str, str]:
        """Submit this attempt; {node: why not} for nodes that could not be used."""
        record.launch_ref = ""  # the previous attempt's job is not this one's
        try:
            job_id = await asyncio.to_thread(
                self.launcher.submit, record.spec, record.placement, record.attempt,
                [n for n in self.drained() if n not in record.nodes])
        except (SlurmError, ValueError) as exc:
            return dict.fromkeys(record.nodes, f"sbatch refused the attempt: {exc}")
        record.launch_ref = job_id  # kept with the run: a restarted controller finds the job
        record.log(self.clock_time(), "submitted", f"attempt {record.attempt} is Slurm job "
                   f"{job_id} on {','.join(record.nodes)}")
        return {}

    async def stop(self, record: RunRecord) -> int:
        """Cancel the current attempt's job; how many nodes it ran on (0 if none)."""
        job_id = record.launch_ref
        if not job_id:
            return 0
        self._cancelled.add(job_id)
        try:
            await asyncio.to_thread(self.launcher.cancel, job_id)
        except SlurmError as exc:
            log.warning("scancel %s failed: %s", job_id, exc)
            return 0
        return len(record.nodes)

    async def poll(self, record: RunRecord) -> None:
        """Turn the job's state into exits and failures on the record (rate-limited)."""
        job_id = record.launch_ref
        now = self.clock_time()
        if not job_id or now - self._last_poll.get(job_id, 0.0) < self.poll_s:
            return
        self._last_poll[job_id] = now
        try:
            job = await asyncio.to_thread(self.launcher.job_state, job_id)
        except SlurmError as exc:
            log.warning("cannot read Slurm job %s: %s", job_id, exc)
            return
        if job.phase is JobPhase.COMPLETED:
            record.exited_ok.update(range(record.spec.world_size))
        elif job.phase in (JobPhase.FAILED, JobPhase.CANCELLED) and job_id not in self._cancelled:
            exits: list[TaskExit] = []
            with contextlib.suppress(OSError):
                exits = await asyncio.to_thread(self.launcher.task_exits, job_id)
            node = exits[0].node if exits else (job.nodes[0] if job.nodes else record.nodes[0])
            detail = exits[0].detail if exits else f"job {job.slurm_state} ({job.reason})"
            ranks = {slot.rank for n in record.placement.nodes if n.node == node
                     for slot in n.ranks}
            record.failures.append(Failure(
                FailureKind.RANK_EXIT, node, now,
                f"Slurm job {job_id} {job.phase.value} (exit {job.exit_code}): {detail}",
                rank=min(ranks) if ranks else None))
