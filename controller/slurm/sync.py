"""Keep Slurm's node states in step with gpufleet's: read both, `reconcile`, apply, report.

The controller loop calls `SlurmNodeSync.tick(read_states)` as often as it likes; the sync
reconciles on the first call (start-up) and then every `interval_s`. `sync(states)` forces a
pass, e.g. right after gpufleet drains a node. A failed command is reported, not raised: the
next pass retries it, since reconcile compares against what Slurm says then.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.fleet.lifecycle import NodeState
from controller.slurm.commands import SlurmCommands, SlurmError
from controller.slurm.reconcile import (
    DEFAULT_OWNER_TAG,
    Action,
    Drain,
    FleetNodeView,
    check_owner_tag,
    held_by_others,
    reconcile,
)
from controller.store.records import NodeRow, TransitionRow
from gpufleet_common.clock import Clock


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one pass did."""

    at: float  # wall time of the pass
    applied: tuple[Action, ...] = ()
    failed: tuple[tuple[Action, str], ...] = ()  # action, error text
    held_by_others: tuple[str, ...] = ()  # fit in gpufleet, drained by someone else
    unknown_to_slurm: tuple[str, ...] = ()  # gpufleet nodes Slurm does not list
    error: str = ""  # the pass could not read Slurm at all

    @property
    def ok(self) -> bool:
        return not self.failed and not self.error

    def lines(self) -> list[str]:
        """Human-readable summary, one line per fact."""
        out = [f"{'drain' if isinstance(a, Drain) else 'resume'} {a.node}"
               + (f": {a.reason}" if isinstance(a, Drain) else "") for a in self.applied]
        out += [f"FAILED {type(a).__name__.lower()} {a.node}: {err}" for a, err in self.failed]
        out += [f"kept {n} out of service: drained by someone else" for n in self.held_by_others]
        out += [f"{n} is not a Slurm node" for n in self.unknown_to_slurm]
        return out + ([f"could not read Slurm: {self.error}"] if self.error else [])


class SlurmNodeSync:
    """Applies `reconcile` through a `SlurmCommands`, on start and then periodically."""

    def __init__(self, commands: SlurmCommands, clock: Clock, *,
                 owner_tag: str = DEFAULT_OWNER_TAG, interval_s: float = 30.0) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, not {interval_s}")
        self._commands = commands
        self._clock = clock
        self._owner_tag = check_owner_tag(owner_tag)
        self._interval_s = interval_s
        self._last_mono: float | None = None
        self.last_report: SyncReport | None = None

    def due(self) -> bool:
        """True before the first pass and once `interval_s` has passed since the last."""
        return (self._last_mono is None
                or self._clock.monotonic() - self._last_mono >= self._interval_s)

    def tick(self, read_states: Callable[[], Mapping[str, FleetNodeView]]) -> SyncReport | None:
        """Reconcile if due (reading gpufleet's states only then); None when not due."""
        return self.sync(read_states()) if self.due() else None

    def sync(self, states: Mapping[str, FleetNodeView]) -> SyncReport:
        """Reconcile now and apply every action; the report says what happened."""
        self._last_mono = self._clock.monotonic()
        at = self._clock.time()
        try:
            slurm = {n.name: n for n in self._commands.nodes()}
        except SlurmError as exc:
            self.last_report = SyncReport(at=at, error=str(exc))
            return self.last_report
        applied: list[Action] = []
        failed: list[tuple[Action, str]] = []
        for action in reconcile(states, slurm, self._owner_tag):
            try:
                if isinstance(action, Drain):
                    self._commands.drain(action.node, action.reason)
                else:
                    self._commands.resume(action.node)
            except SlurmError as exc:
                failed.append((action, str(exc)))
            else:
                applied.append(action)
        self.last_report = SyncReport(
            at=at, applied=tuple(applied), failed=tuple(failed),
            held_by_others=tuple(held_by_others(states, slurm, self._owner_tag)),
            unknown_to_slurm=tuple(sorted(states.keys() - slurm.keys())))
        return self.last_report


def fleet_view(row: NodeRow, last: TransitionRow | None = None) -> FleetNodeView:
    """A stored node as reconcile sees it: its state, and the cause and evidence of the
    transition that put it there (the node's state reason when there is none)."""
    state = NodeState(row.state)
    if last is not None and last.to_state == row.state:
        return FleetNodeView(state, last.cause, last.evidence_id)
    return FleetNodeView(state, row.state_reason, None)
