"""What a full spool drops (pure).

Reports are routine: each one describes the whole node, so the newest supersedes the older and
losing old ones loses little. Events (XIDs, rank exits) and directive results are each a fact
nobody else will ever tell the controller. So, to make room for an incoming record:

1. drop the oldest reports first, as many as needed;
2. if that is not enough and the incoming record is a report, refuse it instead (a report never
   displaces an event);
3. otherwise (an incoming event, only events left) drop the oldest events: the spool keeps the
   most recent history, which is what the controller acts on when it comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum


class Priority(IntEnum):
    """How much a spooled record is worth keeping when the spool is full."""

    ROUTINE = 0  # reports
    EVENT = 1  # XIDs, rank exits, directive results


@dataclass(frozen=True, slots=True)
class Entry:
    """What the policy needs to know about one record."""

    seq: int
    priority: Priority
    size: int  # bytes


@dataclass(frozen=True, slots=True)
class SpoolLimits:
    """The spool's bounds: both must hold after every append."""

    max_records: int = 10_000
    max_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.max_records < 1 or self.max_bytes < 1:
            raise ValueError(f"spool limits must be positive: {self}")


@dataclass(frozen=True, slots=True)
class DropPlan:
    """Seqs to delete (oldest first), and whether the incoming record is then stored."""

    drop: tuple[int, ...]
    accept: bool


def plan_drops(queued: Sequence[Entry], incoming: Entry, limits: SpoolLimits) -> DropPlan:
    """Make room for `incoming` in a spool holding `queued` (in seq order) under `limits`."""
    if incoming.size > limits.max_bytes:
        return DropPlan(drop=(), accept=False)
    count = len(queued) + 1
    used = sum(e.size for e in queued) + incoming.size

    def fits() -> bool:
        return count <= limits.max_records and used <= limits.max_bytes

    if fits():
        return DropPlan(drop=(), accept=True)
    drops: list[int] = []
    for priority in (Priority.ROUTINE, Priority.EVENT):
        if priority is Priority.EVENT and incoming.priority is Priority.ROUTINE:
            return DropPlan(drop=(), accept=False)
        for entry in queued:
            if entry.priority is not priority:
                continue
            drops.append(entry.seq)
            count -= 1
            used -= entry.size
            if fits():
                return DropPlan(drop=tuple(drops), accept=True)
    raise AssertionError("unreachable: an empty spool holds any record within max_bytes")
