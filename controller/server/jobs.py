"""Store jobs that apply lifecycle decisions, each in one transaction on the writer thread.

The decisions come from the pure lifecycle (via `decisions`); these functions only read the
current state, ask, and record the answer (compare-and-set).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from controller.fleet.lifecycle import NodeEvent, NodeState
from controller.store import FleetStore, NodeIdentity, Registration, StaleState, TransitionRow

from .decisions import command_move, moves_for_lost_heartbeats


class UnknownNode(LookupError):
    """No node of that name is registered."""


def register_job(
    store: FleetStore, identity: NodeIdentity, now: float
) -> tuple[Registration, TransitionRow | None]:
    """Store a Hello and apply the `registered` lifecycle event (an unreachable node returns)."""
    with store.transaction():
        registration = store.register_node(identity, now)
        move = command_move(identity.name, NodeState(registration.state), NodeEvent.REGISTERED,
                            "agent said hello")
        row = None
        if move is not None:
            row = store.record_transition(identity.name, move.from_state, move.to_state,
                                          cause=move.cause, actor="controller", at=now)
        return registration, row


def command_job(
    store: FleetStore, node: str, event: NodeEvent, *, cause: str, actor: str, at: float,
    evidence_id: int | None = None, audit: dict[str, str] | None = None,
) -> TransitionRow | None:
    """Apply a lifecycle command; None if it changes nothing. Raises UnknownNode, or
    IllegalTransition when the node's state does not allow it. `audit` logs the action."""
    with store.transaction():
        row = store.node(node)
        if row is None:
            raise UnknownNode(node)
        move = command_move(node, NodeState(row.state), event, cause, evidence_id)
        if audit is not None:
            store.audit(actor, event.value, node, at, audit)
        if move is None:
            return None
        return store.record_transition(node, move.from_state, move.to_state, cause=cause,
                                       actor=actor, at=at, evidence_id=evidence_id)


def heartbeat_job(
    store: FleetStore, stale: Sequence[str], timeout_s: float, at: float
) -> list[TransitionRow]:
    """Mark `stale` nodes unreachable where the lifecycle says so (drained ones stay)."""
    rows: list[TransitionRow] = []
    with store.transaction():
        states = {n: NodeState(s) for n, s in store.states(stale).items()}
        for move in moves_for_lost_heartbeats(states, stale, timeout_s):
            with contextlib.suppress(StaleState):
                rows.append(store.record_transition(
                    move.node, move.from_state, move.to_state, cause=move.cause,
                    actor="controller", at=at))
    return rows
