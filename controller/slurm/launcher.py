"""Launch, watch and stop the attempts of a supervised run through Slurm.

The supervisor keeps its own loop; this gives it the three calls it needs:

    job = launcher.submit(spec, placement, attempt=1, exclude=drained)
    state = launcher.job_state(job)          # SlurmJob: phase, exit code, nodes
    launcher.cancel(job)

A failed attempt is followed by `submit(spec, new_placement, attempt=2, exclude=...)`; the
training command resumes from its checkpoint directory by itself (the spec's command points
it there), so a new placement continues from the latest complete checkpoint.
`task_exits(job)` reads srun's account of which node's task failed first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from controller.slurm.batch import BatchOptions, batch_script
from controller.slurm.commands import SlurmCommands, check_job_id
from controller.slurm.model import SlurmJob
from controller.supervisor.placement import Placement
from controller.supervisor.spec import RunSpec
from gpufleet_common.clock import Clock

_TASK_LINE = re.compile(r"^srun: error: (?P<node>[A-Za-z0-9._-]+): tasks? (?P<tasks>[\d,-]+): "
                        r"(?P<detail>.+?)\s*$")
_EXIT_CODE = re.compile(r"Exited with exit code (\d+)")


@dataclass(frozen=True, slots=True)
class Submission:
    """One submitted attempt."""

    job_id: str
    run: str
    attempt: int
    nodes: tuple[str, ...]  # rank order
    exclude: tuple[str, ...]
    script: Path
    stdout: Path
    stderr: Path


@dataclass(frozen=True, slots=True)
class TaskExit:
    """srun's report of tasks that ended badly on a node."""

    node: str
    tasks: tuple[int, ...]  # Slurm task ids (SLURM_PROCID)
    exit_code: int | None  # None when a signal ended them
    detail: str  # "Exited with exit code 17", "Terminated", "Killed", ...


def _task_ids(text: str) -> tuple[int, ...]:
    ids: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        ids.extend(range(int(lo), int(hi or lo) + 1))
    return tuple(ids)


def parse_task_exits(text: str) -> list[TaskExit]:
    """Task failures from a job's stderr, in the order srun reported them (earliest first)."""
    exits: list[TaskExit] = []
    for line in text.splitlines():
        match = _TASK_LINE.match(line.strip())
        if match is None:
            continue
        code = _EXIT_CODE.search(match["detail"])
        exits.append(TaskExit(match["node"], _task_ids(match["tasks"]),
                              int(code.group(1)) if code else None, match["detail"]))
    return exits


class SlurmLauncher:
    """Submits attempts as batch jobs and reads their fate."""

    def __init__(self, commands: SlurmCommands, options: BatchOptions,
                 script_dir: Path | None = None) -> None:
        self._commands = commands
        self._options = options
        self._script_dir = script_dir or options.log_dir
        self._submissions: dict[str, Submission] = {}

    def submit(self, spec: RunSpec, placement: Placement, attempt: int,
               exclude: Sequence[str] = ()) -> str:
        """Submit `attempt` of `spec` on `placement` with `exclude` kept out; the job id."""
        addresses = {n.name: n.address for n in self._commands.nodes()}
        unknown = [n for n in placement.node_names if n not in addresses]
        if unknown:
            raise ValueError(f"placement names node(s) Slurm does not know: {unknown}")
        job = batch_script(spec, placement, attempt, exclude, addresses, self._options)
        self._options.log_dir.mkdir(parents=True, exist_ok=True)
        self._script_dir.mkdir(parents=True, exist_ok=True)
        script = self._script_dir / f"{job.name}.sbatch"
        script.write_text(job.script)
        job_id = self._commands.submit(script)

        def path(p: Path) -> Path:
            return Path(str(p).replace("%j", job_id))

        self._submissions[job_id] = Submission(
            job_id, spec.name, attempt, placement.node_names, tuple(exclude), script,
            path(job.stdout), path(job.stderr))
        return job_id

    def submission(self, job_id: str) -> Submission:
        """What `submit` recorded for this job (KeyError for jobs it did not submit)."""
        return self._submissions[check_job_id(job_id)]

    def job_state(self, job_id: str) -> SlurmJob:
        """The job's phase (pending/running/completed/failed/cancelled) and exit code."""
        return self._commands.job(job_id)

    def cancel(self, job_id: str) -> None:
        """Cancel the job; a job that already ended is left as it was."""
        self._commands.cancel(job_id)

    def task_exits(self, job_id: str) -> list[TaskExit]:
        """Which node's tasks failed, from the job's stderr (empty when there is none yet)."""
        try:
            return parse_task_exits(self.submission(job_id).stderr.read_text(errors="replace"))
        except FileNotFoundError:
            return []

    def wait(self, job_id: str, clock: Clock, timeout_s: float,
             poll_s: float = 0.25) -> SlurmJob:
        """Poll until the job ends; TimeoutError (with its last state) after `timeout_s`."""
        deadline = clock.monotonic() + timeout_s
        while True:
            state = self.job_state(job_id)
            if state.terminal:
                return state
            if clock.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} still {state.slurm_state} after "
                                   f"{timeout_s:g} s ({state.reason or 'no reason given'})")
            clock.sleep(poll_s)
