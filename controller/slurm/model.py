"""What gpufleet reads from Slurm, and pure parsers of the commands' machine-readable output.

The formats are chosen so every field is unambiguous: `|` separates fields and free text (a
node's drain reason, a job's pending reason) always comes last, so a `|` inside it survives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from controller.slurm.hostlist import expand_hostlist

#: `sinfo -N -h -O <this>`: one line per node and partition, no padding, reason last.
SINFO_NODE_FIELDS = "NodeList:0|,StateComplete:0|,User:0|,Timestamp:0|,NodeAddr:0|,Reason:0"
#: `squeue -h -t all -o <this>`: reason last.
SQUEUE_FORMAT = "%i|%j|%T|%N|%r"
#: `sacct -n -P -X -o <this>` (only where accounting storage is enabled).
SACCT_FIELDS = "JobID,JobName,State,ExitCode,NodeList"


class SlurmParseError(ValueError):
    """Output of a Slurm command that does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class SlurmNode:
    """One node as Slurm sees it."""

    name: str
    state: str  # base state, lower case: idle, allocated, mixed, down, ...
    flags: frozenset[str] = frozenset()  # lower case: drain, not_responding, ...
    reason: str = ""
    reason_user: str = ""
    reason_time: str = ""
    address: str = ""

    @property
    def drained(self) -> bool:
        """Drained or draining: Slurm starts no new job on it."""
        return "drain" in self.flags

    @property
    def out_of_service(self) -> bool:
        """Slurm will not schedule onto it (drained, down, failing)."""
        return self.drained or self.state in ("down", "fail", "failing") or "fail" in self.flags


class JobPhase(StrEnum):
    """Where a job is, as a supervisor needs it."""

    PENDING = "pending"
    RUNNING = "running"  # includes completing: the end is not final yet
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


_PHASES: dict[str, JobPhase] = {
    **dict.fromkeys(("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                     "RESV_DEL_HOLD"), JobPhase.PENDING),
    **dict.fromkeys(("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
                     "RESIZING"), JobPhase.RUNNING),
    "COMPLETED": JobPhase.COMPLETED,
    "CANCELLED": JobPhase.CANCELLED,
    **dict.fromkeys(("FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
                     "OUT_OF_MEMORY", "REVOKED", "SPECIAL_EXIT"), JobPhase.FAILED),
}
TERMINAL_PHASES = frozenset({JobPhase.COMPLETED, JobPhase.FAILED, JobPhase.CANCELLED})


def job_phase(slurm_state: str) -> JobPhase:
    """The phase of a Slurm job state (`FAILED`, `CANCELLED by 0`, `OUT_OF_ME+`)."""
    word = slurm_state.strip().split(" ")[0].upper().rstrip("+")
    if word == "OUT_OF_ME":
        word = "OUT_OF_MEMORY"
    try:
        return _PHASES[word]
    except KeyError:
        raise SlurmParseError(f"unknown Slurm job state {slurm_state!r}") from None


@dataclass(frozen=True, slots=True)
class SlurmJob:
    """One job: its phase, Slurm's own state word, and how it ended."""

    job_id: str
    phase: JobPhase
    slurm_state: str
    exit_code: int | None = None  # the batch script's exit status, once terminal
    signal: int | None = None  # the signal that ended it, if any
    reason: str = ""  # Slurm's reason (why pending, why failed)
    nodes: tuple[str, ...] = ()
    name: str = ""

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    @property
    def succeeded(self) -> bool:
        return self.phase is JobPhase.COMPLETED


def _blank(value: str, *nothing: str) -> str:
    return "" if value in nothing else value


def _state_parts(text: str) -> tuple[str, frozenset[str]]:
    parts = [p.strip().lower().rstrip("*~#!%$@^-") for p in text.split("+")]
    if not parts or not parts[0]:
        raise SlurmParseError(f"empty node state in {text!r}")
    return parts[0], frozenset(p for p in parts[1:] if p)


def parse_sinfo_nodes(text: str) -> list[SlurmNode]:
    """Nodes from `sinfo -N -h -O SINFO_NODE_FIELDS`, once each (a node in two partitions is
    listed twice)."""
    nodes: dict[str, SlurmNode] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 5)
        if len(fields) != 6:
            raise SlurmParseError(f"sinfo line has {len(fields)} fields, expected 6: {line!r}")
        name, state_text, user, stamp, addr, reason = (f.strip() for f in fields)
        if not name:
            raise SlurmParseError(f"sinfo line without a node name: {line!r}")
        state, flags = _state_parts(state_text)
        nodes.setdefault(name, SlurmNode(
            name=name, state=state, flags=flags, reason=_blank(reason, "none", "(null)"),
            reason_user=_blank(user, "Unknown", "N/A"), reason_time=_blank(stamp, "Unknown"),
            address=_blank(addr, "(null)", "N/A")))
    return list(nodes.values())


def parse_sbatch_parsable(text: str) -> str:
    """The job id `sbatch --parsable` printed (`123` or `123;cluster`)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    job_id = lines[-1].split(";")[0] if lines else ""
    if not job_id.isdigit():
        raise SlurmParseError(f"sbatch printed no job id: {text!r}")
    return job_id


def _exit_status(text: str) -> tuple[int | None, int | None]:
    code, _, sig = text.partition(":")
    if not code.isdigit() or (sig and not sig.isdigit()):
        raise SlurmParseError(f"bad exit code {text!r}")
    return int(code), int(sig) if sig else 0


def _field(line: str, key: str) -> str | None:
    match = re.search(rf"(?:^|\s){re.escape(key)}=(\S*)", line)
    return None if match is None else match.group(1)


def parse_scontrol_job(text: str, job_id: str) -> SlurmJob:
    """The job `job_id` from `scontrol show job -o <id>` (one line per job)."""
    lines = [line for line in text.splitlines() if line.strip()]
    line = next((x for x in lines if _field(x, "JobId") == job_id), None)
    if line is None:
        raise SlurmParseError(f"scontrol shows no JobId={job_id}: {text[:200]!r}")
    state = _field(line, "JobState")
    if not state:
        raise SlurmParseError(f"no JobState in {line[:200]!r}")
    phase = job_phase(state)
    code, sig = _exit_status(_field(line, "ExitCode") or "0:0")
    terminal = phase in TERMINAL_PHASES
    reason = (_field(line, "Reason") or "").replace("_", " ")
    return SlurmJob(job_id=job_id, phase=phase, slurm_state=state,
                    exit_code=code if terminal else None, signal=sig if terminal else None,
                    reason=_blank(reason, "None"),
                    nodes=tuple(expand_hostlist(_field(line, "NodeList") or "")),
                    name=_field(line, "JobName") or "")


def parse_sacct_job(text: str, job_id: str) -> SlurmJob | None:
    """The job from `sacct -n -P -X -j <id> -o SACCT_FIELDS`, or None when sacct has none."""
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) != 5 or fields[0] != job_id:
            continue
        _, name, state, exit_text, nodelist = fields
        phase = job_phase(state)
        code, sig = _exit_status(exit_text or "0:0")
        terminal = phase in TERMINAL_PHASES
        return SlurmJob(job_id=job_id, phase=phase, slurm_state=state.split(" ")[0],
                        exit_code=code if terminal else None,
                        signal=sig if terminal else None,
                        nodes=tuple(expand_hostlist(_blank(nodelist, "None assigned"))),
                        name=name)
    return None


def parse_squeue(text: str) -> list[SlurmJob]:
    """Jobs from `squeue -h -t all -o SQUEUE_FORMAT` (no exit codes: ask `job()` for those)."""
    jobs: list[SlurmJob] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("|", 4)
        if len(fields) != 5:
            raise SlurmParseError(f"squeue line has {len(fields)} fields, expected 5: {line!r}")
        job_id, name, state, nodelist, reason = (f.strip() for f in fields)
        jobs.append(SlurmJob(job_id=job_id, phase=job_phase(state), slurm_state=state,
                             reason=_blank(reason, "None"),
                             nodes=tuple(expand_hostlist(nodelist)), name=name))
    return jobs
