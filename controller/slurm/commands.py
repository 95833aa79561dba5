"""The one seam that runs Slurm's commands (`sinfo`, `scontrol`, `squeue`, `sbatch`, `scancel`,
`sacct`). Everything else in gpufleet talks to Slurm through `SlurmCommands`.

`SubprocessSlurm` runs the real binaries with a timeout and an injected environment (its
`SLURM_CONF` picks the cluster), and turns every failure into a `SlurmError` that names the
command and carries its stderr. `controller.slurm.fake.FakeSlurm` is the in-memory twin.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from controller.slurm.hostlist import check_node_name
from controller.slurm.model import (
    SACCT_FIELDS,
    SINFO_NODE_FIELDS,
    SQUEUE_FORMAT,
    SlurmJob,
    SlurmNode,
    parse_sacct_job,
    parse_sbatch_parsable,
    parse_scontrol_job,
    parse_sinfo_nodes,
    parse_squeue,
)

_JOB_ID = re.compile(r"^\d+$")


class SlurmError(RuntimeError):
    """A Slurm command failed (or could not run); `command` and `stderr` say how."""

    def __init__(self, command: Sequence[str], message: str, stderr: str = "",
                 returncode: int | None = None) -> None:
        self.command = tuple(command)
        self.stderr = stderr.strip()
        self.returncode = returncode
        detail = f": {self.stderr}" if self.stderr else ""
        super().__init__(f"{' '.join(self.command)}: {message}{detail}")


class JobNotFound(SlurmError):
    """Neither slurmctld (jobs are purged after MinJobAge) nor accounting knows the job."""


def check_job_id(job_id: str) -> str:
    """`job_id` when it is a plain Slurm job id; ValueError otherwise."""
    if not isinstance(job_id, str) or not _JOB_ID.match(job_id):
        raise ValueError(f"not a Slurm job id: {job_id!r}")
    return job_id


def check_reason(reason: str) -> str:
    """A drain reason Slurm accepts as one argument: non-empty, one line."""
    if not reason.strip() or any(ch in reason for ch in "\r\n\0"):
        raise ValueError(f"a drain reason must be one non-empty line: {reason!r}")
    return reason


class SlurmCommands(Protocol):
    """What gpufleet asks of Slurm."""

    def nodes(self) -> list[SlurmNode]:
        """Every node, with its state, flags and reason."""
        ...

    def drain(self, node: str, reason: str) -> None:
        """`scontrol update NodeName=<node> State=DRAIN Reason=<reason>`."""
        ...

    def resume(self, node: str) -> None:
        """`scontrol update NodeName=<node> State=RESUME`."""
        ...

    def submit(self, script: Path) -> str:
        """`sbatch --parsable <script>`; the job id."""
        ...

    def job(self, job_id: str) -> SlurmJob:
        """One job's state and exit; raises JobNotFound when Slurm no longer knows it."""
        ...

    def queue(self) -> list[SlurmJob]:
        """Every job slurmctld still holds (no exit codes)."""
        ...

    def cancel(self, job_id: str) -> None:
        """`scancel <job_id>`; cancelling a finished job is not an error."""
        ...


class SubprocessSlurm:
    """`SlurmCommands` by running the real binaries."""

    def __init__(self, env: Mapping[str, str] | None = None, *, timeout_s: float = 30.0,
                 bin_dir: str | os.PathLike[str] | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, not {timeout_s}")
        self._env = dict(os.environ if env is None else env)
        self._timeout_s = timeout_s
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None

    def _run(self, argv: Sequence[str], *, ok_stderr: Sequence[str] = ()) -> str:
        program = str(self._bin_dir / argv[0]) if self._bin_dir else argv[0]
        command = [program, *argv[1:]]
        try:
            done = subprocess.run(command, env=self._env, capture_output=True, text=True,
                                  timeout=self._timeout_s, check=False)
        except FileNotFoundError as exc:
            raise SlurmError(argv, f"{argv[0]} is not installed or not on PATH") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(argv, f"timed out after {self._timeout_s:g} s") from exc
        if done.returncode != 0 and not any(s in done.stderr for s in ok_stderr):
            raise SlurmError(argv, f"exit status {done.returncode}", done.stderr, done.returncode)
        return done.stdout

    def nodes(self) -> list[SlurmNode]:
        return parse_sinfo_nodes(self._run(["sinfo", "-N", "-h", "-O", SINFO_NODE_FIELDS]))

    def drain(self, node: str, reason: str) -> None:
        self._run(["scontrol", "update", f"NodeName={check_node_name(node)}", "State=DRAIN",
                   f"Reason={check_reason(reason)}"])

    def resume(self, node: str) -> None:
        self._run(["scontrol", "update", f"NodeName={check_node_name(node)}", "State=RESUME"])

    def submit(self, script: Path) -> str:
        if not script.is_file():
            raise ValueError(f"no batch script at {script}")
        return parse_sbatch_parsable(self._run(["sbatch", "--parsable", str(script)]))

    def job(self, job_id: str) -> SlurmJob:
        check_job_id(job_id)
        argv = ["scontrol", "show", "job", "-o", job_id]
        try:
            return parse_scontrol_job(self._run(argv), job_id)
        except SlurmError as exc:
            if "Invalid job id" not in exc.stderr:
                raise
        return self._accounted_job(job_id)

    def _accounted_job(self, job_id: str) -> SlurmJob:
        argv = ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", SACCT_FIELDS]
        try:
            found = parse_sacct_job(self._run(argv), job_id)
        except SlurmError as exc:
            raise JobNotFound(argv, f"job {job_id} is gone from slurmctld and accounting "
                              "has no record of it", exc.stderr, exc.returncode) from exc
        if found is None:
            raise JobNotFound(argv, f"no job {job_id} in slurmctld or accounting")
        return found

    def queue(self) -> list[SlurmJob]:
        return parse_squeue(self._run(["squeue", "-h", "-t", "all", "-o", SQUEUE_FORMAT]))

    def cancel(self, job_id: str) -> None:
        self._run(["scancel", check_job_id(job_id)],
                  ok_stderr=("already completing or completed",))
