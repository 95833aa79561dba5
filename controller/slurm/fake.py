"""An in-memory Slurm for tests of the pure logic: `SlurmCommands` without daemons.

It keeps the rules that matter to gpufleet the way slurmctld does: unknown nodes and jobs are
errors, a drain needs a reason, resuming a node that is neither drained nor down is refused
("Invalid node state specified"). Every state-changing call is recorded in `calls`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from controller.slurm.commands import JobNotFound, SlurmError, check_job_id, check_reason
from controller.slurm.hostlist import check_node_name
from controller.slurm.model import JobPhase, SlurmJob, SlurmNode, job_phase


class FakeSlurm:
    """`SlurmCommands` over dictionaries; tests set states and read `calls`."""

    def __init__(self, nodes: Iterable[SlurmNode] = ()) -> None:
        self.node_table: dict[str, SlurmNode] = {n.name: n for n in nodes}
        self.jobs: dict[str, SlurmJob] = {}
        self.scripts: dict[str, str] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_next: dict[str, SlurmError] = {}  # command name -> error raised once
        self._next_job = 1

    def _maybe_fail(self, name: str, argv: tuple[str, ...]) -> None:
        error = self.fail_next.pop(name, None)
        if error is not None:
            self.calls.append(("failed", *argv))
            raise error

    def _node(self, name: str, argv: tuple[str, ...]) -> SlurmNode:
        check_node_name(name)
        node = self.node_table.get(name)
        if node is None:
            raise SlurmError(argv, "exit status 1", "slurm_update error: Invalid node name "
                             "specified", 1)
        return node

    def nodes(self) -> list[SlurmNode]:
        self._maybe_fail("nodes", ("sinfo",))
        return list(self.node_table.values())

    def drain(self, node: str, reason: str) -> None:
        argv = ("scontrol", "update", f"NodeName={node}", "State=DRAIN", f"Reason={reason}")
        self._maybe_fail("drain", argv)
        current = self._node(node, argv)
        check_reason(reason)
        self.node_table[node] = replace(current, flags=current.flags | {"drain"},
                                        reason=reason, reason_user="root")
        self.calls.append(("drain", node, reason))

    def resume(self, node: str) -> None:
        argv = ("scontrol", "update", f"NodeName={node}", "State=RESUME")
        self._maybe_fail("resume", argv)
        current = self._node(node, argv)
        if not current.drained and current.state != "down":
            raise SlurmError(argv, "exit status 1",
                             "slurm_update error: Invalid node state specified", 1)
        state = "idle" if current.state == "down" else current.state
        self.node_table[node] = replace(current, state=state, flags=current.flags - {"drain"},
                                        reason="", reason_user="", reason_time="")
        self.calls.append(("resume", node))

    def submit(self, script: Path) -> str:
        self._maybe_fail("submit", ("sbatch", "--parsable", str(script)))
        job_id = str(self._next_job)
        self._next_job += 1
        self.scripts[job_id] = script.read_text()
        self.jobs[job_id] = SlurmJob(job_id, JobPhase.PENDING, "PENDING")
        self.calls.append(("submit", str(script)))
        return job_id

    def job(self, job_id: str) -> SlurmJob:
        check_job_id(job_id)
        self._maybe_fail("job", ("scontrol", "show", "job", "-o", job_id))
        if job_id not in self.jobs:
            raise JobNotFound(("scontrol", "show", "job", "-o", job_id),
                              f"no job {job_id} in slurmctld or accounting")
        return self.jobs[job_id]

    def queue(self) -> list[SlurmJob]:
        self._maybe_fail("queue", ("squeue",))
        return [replace(j, exit_code=None, signal=None) for j in self.jobs.values()]

    def cancel(self, job_id: str) -> None:
        check_job_id(job_id)
        self._maybe_fail("cancel", ("scancel", job_id))
        job = self.jobs.get(job_id)
        if job is not None and not job.terminal:
            self.jobs[job_id] = replace(job, phase=JobPhase.CANCELLED,
                                        slurm_state="CANCELLED", exit_code=0, signal=15)
        self.calls.append(("cancel", job_id))

    def set_job(self, job_id: str, slurm_state: str, exit_code: int | None = None,
                nodes: tuple[str, ...] = ()) -> None:
        """Move a job (tests play slurmctld)."""
        phase = job_phase(slurm_state)
        current = self.jobs[job_id]
        self.jobs[job_id] = replace(current, phase=phase, slurm_state=slurm_state,
                                    exit_code=exit_code, signal=0 if exit_code is not None
                                    else None, nodes=nodes or current.nodes)
