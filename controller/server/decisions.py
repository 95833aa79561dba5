"""Pure glue between what was stored and the lifecycle: which moves a batch causes.

The lifecycle itself (states, events, the transition table) lives in controller.fleet; this
module only decides which lifecycle events stored messages stand for, and folds them over the
nodes' current states into a list of moves for the store to apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.fleet.lifecycle import (
    IllegalTransition,
    NodeEvent,
    NodeState,
    event_for_verdict,
    transition,
)
from controller.store import StoredItem


@dataclass(frozen=True)
class Move:
    """One lifecycle transition to record."""

    node: str
    from_state: NodeState
    to_state: NodeState
    event: NodeEvent
    cause: str
    evidence_id: int | None = None


#: Events that never move a node out of its state, whatever it is (see the lifecycle table)
#: except `unreachable`, which any stored message clears first.
_QUIET = frozenset({NodeEvent.REPORT_OK, NodeEvent.REPORT_WARN})


def event_for_item(item: StoredItem) -> NodeEvent | None:
    """The lifecycle event a stored message stands for (reports and XIDs), or None."""
    if item.kind in ("report", "xid"):
        return event_for_verdict(item.verdict, item.action or "none")
    return None


def may_move(item: StoredItem) -> bool:
    """Whether `item` could move a node that is not unreachable."""
    event = event_for_item(item)
    return event is not None and event not in _QUIET


def _step(
    moves: list[Move], node: str, state: NodeState, event: NodeEvent, cause: str,
    evidence_id: int | None,
) -> NodeState:
    try:
        target = transition(state, event)
    except IllegalTransition:
        return state
    if target is not state:
        moves.append(Move(node, state, target, event, cause, evidence_id))
    return target


def moves_for_batch(
    states: Mapping[str, NodeState], items: Sequence[StoredItem]
) -> list[Move]:
    """The moves that the newly stored `items` cause, in order, given the nodes' states.

    A message from an unreachable node first restores its heartbeat; then a report's or
    XID's verdict applies (a fatal XID drains, a critical report makes the node suspect).
    """
    current = dict(states)
    moves: list[Move] = []
    for item in items:
        state = current.get(item.node)
        if state is None:
            continue
        if state is NodeState.UNREACHABLE:
            state = _step(moves, item.node, state, NodeEvent.HEARTBEAT_RESTORED,
                          f"heard from again ({item.kind} seq {item.seq})", None)
        event = event_for_item(item)
        if event is not None:
            state = _step(moves, item.node, state, event, item.cause, item.evidence_id)
        current[item.node] = state
    return moves


def moves_for_lost_heartbeats(
    states: Mapping[str, NodeState], stale: Iterable[str], timeout_s: float
) -> list[Move]:
    """Moves for nodes not heard from within `timeout_s` (drained ones stay drained)."""
    moves: list[Move] = []
    for node in stale:
        state = states.get(node)
        if state is not None:
            _step(moves, node, state, NodeEvent.HEARTBEAT_LOST,
                  f"no message for more than {timeout_s:g} s", None)
    return moves


def command_move(
    node: str, state: NodeState, event: NodeEvent, cause: str, evidence_id: int | None = None
) -> Move | None:
    """The move a command causes, None if it changes nothing; raises IllegalTransition."""
    target = transition(state, event)
    if target is state:
        return None
    return Move(node, state, target, event, cause, evidence_id)
