"""The supervisor's decisions, as pure functions of what it has observed.

torch elastic's lessons, kept: workers change state as a unit (any failure stops every rank),
a restart budget bounds crash loops, and the root cause is the EARLIEST failure — the peers
that die a moment later with "connection closed by peer" are its sympathetic victims. Beyond
torch elastic: a failure that implicates the node (fatal XID, node unreachable, a hang) takes
that node out and brings in a spare from the SAME NVLink domain, so the EP group stays whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class RunState(StrEnum):
    """Lifecycle of one run (documented like torch elastic's WorkerState)."""

    PENDING = "pending"  # accepted, not yet placed
    STARTING = "starting"  # start directives sent, no step seen yet in this attempt
    RUNNING = "running"  # ranks are stepping
    RESTARTING = "restarting"  # a failure was seen: ranks stopping, relaunch on a new placement
    COMPLETED = "completed"  # every rank exited 0
    FAILED = "failed"  # unrecoverable: budget exhausted, no spare, or unplaceable
    STOPPED = "stopped"  # an operator stopped it


class RunEvent(StrEnum):
    LAUNCHED = "launched"
    STEPPED = "stepped"
    FAILURE = "failure"
    RELAUNCHED = "relaunched"
    ALL_EXITED_OK = "all_exited_ok"
    GAVE_UP = "gave_up"
    OPERATOR_STOP = "operator_stop"


S, E = RunState, RunEvent
TRANSITIONS: Mapping[tuple[RunState, RunEvent], RunState] = {
    (S.PENDING, E.LAUNCHED): S.STARTING,
    (S.PENDING, E.GAVE_UP): S.FAILED,  # cannot be placed
    (S.STARTING, E.STEPPED): S.RUNNING,
    (S.STARTING, E.FAILURE): S.RESTARTING,
    (S.STARTING, E.ALL_EXITED_OK): S.COMPLETED,  # resumed at the last step: nothing to do
    (S.RUNNING, E.STEPPED): S.RUNNING,
    (S.RUNNING, E.FAILURE): S.RESTARTING,
    (S.RUNNING, E.ALL_EXITED_OK): S.COMPLETED,
    (S.RESTARTING, E.RELAUNCHED): S.STARTING,
    (S.RESTARTING, E.GAVE_UP): S.FAILED,
    **{(state, E.OPERATOR_STOP): S.STOPPED
       for state in (S.PENDING, S.STARTING, S.RUNNING, S.RESTARTING)},
}
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.STOPPED})


class IllegalRunTransition(ValueError):
    def __init__(self, state: RunState, event: RunEvent) -> None:
        super().__init__(f"run cannot take event {event.value!r} in state {state.value!r}")


def run_transition(state: RunState, event: RunEvent) -> RunState:
    """The next state, from the table; anything not in it is illegal."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalRunTransition(state, event) from None


class FailureKind(StrEnum):
    NODE_FATAL = "node_fatal"  # a fatal XID / critical finding on a node of the run
    NODE_UNREACHABLE = "node_unreachable"  # the agent's stream/heartbeat is gone
    RANK_HANG = "rank_hang"  # alive but no step within the hang timeout
    RANK_EXIT = "rank_exit"  # a rank exited non-zero


_IMPLICATES_NODE = frozenset({FailureKind.NODE_FATAL, FailureKind.NODE_UNREACHABLE,
                              FailureKind.RANK_HANG})
_TIE_ORDER = {FailureKind.NODE_FATAL: 0, FailureKind.NODE_UNREACHABLE: 1,
              FailureKind.RANK_HANG: 2, FailureKind.RANK_EXIT: 3}


@dataclass(frozen=True)
class Failure:
    kind: FailureKind
    node: str
    at: float
    detail: str
    rank: int | None = None
    evidence_id: str = ""


@dataclass(frozen=True)
class RunView:
    """What decide() needs to know about the current attempt."""

    attempt: int
    restarts_used: int
    restart_budget: int
    world_size: int
    nodes: Sequence[str]  # current placement, rank order
    domain_of: Mapping[str, str]
    spares: Mapping[str, Sequence[str]]  # domain -> admitted healthy spares, in preference order
    failures: Sequence[Failure] = ()
    exited_ok: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Continue:
    pass


@dataclass(frozen=True)
class Complete:
    pass


@dataclass(frozen=True)
class Restart:
    root_cause: Failure
    replace: Mapping[str, str] = field(default_factory=dict)  # failed node -> spare
    take_out: tuple[Failure, ...] = ()  # node-implicating failures: drain/suspect these nodes


@dataclass(frozen=True)
class GiveUp:
    reason: str
    root_cause: Failure | None = None


Decision = Continue | Complete | Restart | GiveUp


def root_cause(failures: Sequence[Failure]) -> Failure:
    """The earliest failure; at equal times a node-level cause beats a rank's symptom."""
    return min(failures, key=lambda f: (f.at, _TIE_ORDER[f.kind]))


def decide(view: RunView) -> Decision:
    """What to do now: continue, complete, restart (with which replacements), or give up."""
    if not view.failures:
        return Complete() if len(view.exited_ok) >= view.world_size else Continue()
    root = root_cause(view.failures)
    if view.restarts_used >= view.restart_budget:
        return GiveUp(f"restart budget of {view.restart_budget} exhausted; last root cause: "
                      f"{root.kind.value} on {root.node}: {root.detail}", root)
    take_out = _node_failures(view)
    replace: dict[str, str] = {}
    used: set[str] = set(view.nodes)
    for failure in take_out:
        domain = view.domain_of.get(failure.node, "")
        spare = next((s for s in view.spares.get(domain, ()) if s not in used), None)
        if spare is None:
            if failure.kind is FailureKind.RANK_HANG:
                continue  # a hang without a spare: retry in place rather than give up
            return GiveUp(f"no healthy spare left in NVLink domain {domain!r} to replace "
                          f"{failure.node} ({failure.kind.value}: {failure.detail})", root)
        replace[failure.node] = spare
        used.add(spare)
    return Restart(root, replace, tuple(take_out))


def _node_failures(view: RunView) -> list[Failure]:
    """One failure per implicated node of the placement (earliest kept). When EVERY node of the
    placement hangs, the hang says nothing about any one node (a rendezvous, a code or a
    configuration problem): hangs then implicate none."""
    hanging = {f.node for f in view.failures if f.kind is FailureKind.RANK_HANG}
    implicating = _IMPLICATES_NODE
    if view.nodes and hanging >= set(view.nodes):
        implicating = _IMPLICATES_NODE - {FailureKind.RANK_HANG}
    first: dict[str, Failure] = {}
    for f in sorted(view.failures, key=lambda f: (f.at, _TIE_ORDER[f.kind])):
        if f.kind in implicating and f.node in view.nodes and f.node not in first:
            first[f.node] = f
    return list(first.values())


def find_hangs(
    last_step_at: Mapping[int, float],
    node_of_rank: Mapping[int, str],
    attempt_started_at: float,
    now: float,
    hang_timeout_s: float,
    startup_timeout_s: float,
) -> list[Failure]:
    """Ranks with no step within the hang timeout (or none since start within the startup
    timeout). `last_step_at` holds only ranks that reported a step in this attempt."""
    hangs = []
    for rank, node in sorted(node_of_rank.items()):
        last = last_step_at.get(rank)
        if last is None:
            if now - attempt_started_at > startup_timeout_s:
                hangs.append(Failure(FailureKind.RANK_HANG, node, now,
                                     f"rank {rank} made no step within the startup timeout "
                                     f"of {startup_timeout_s:.0f} s", rank))
        elif now - last > hang_timeout_s:
            hangs.append(Failure(FailureKind.RANK_HANG, node, now,
                                 f"rank {rank} made no step for {now - last:.1f} s "
                                 f"(hang timeout {hang_timeout_s:.0f} s)", rank))
    return hangs
