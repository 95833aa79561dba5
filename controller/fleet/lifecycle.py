"""The node lifecycle: one state machine, its transition table as data.

A node is `registered` when it first says Hello and must pass a preflight to become `ready`;
only `ready` nodes are allocated to runs. Health reports, fatal events and heartbeats are
*observations*: they arrive at any time, so every state has an explicit entry for each of them
and they never raise. Everything else is a *command* (preflight steps, allocation, operator
actions, repair) and raises `IllegalTransition` where it makes no sense, so the caller can
answer FAILED_PRECONDITION instead of guessing.

Rules the table encodes (tests check each one):

- An operator drain is sticky. `drained` leaves only by an operator's or repair's hand
  (`operator_undrain`, `repair_started`, `repair_done`, `retire`); no report, heartbeat or
  Hello undoes it, and a drained node that drops off the network stays `drained`.
- Returning to service from `drained`, `repair` or `unreachable` lands in `registered`: the
  node must pass preflight again before it is `ready`. Nothing we knew before the outage is
  trusted; the gate judges the node's evidence afresh.
- A critical report makes a node `suspect`; one healthy sweep does not clear it (hysteresis).
  A suspect node is cleared only by a preflight that re-tests it (`preflight_started` ->
  `preflight` -> `preflight_passed` -> `ready`).
- A fatal event (critical with reset/reboot/service/drain action) drains at once, from any
  state that is in service.
- `repair` absorbs observations: reboots and restarts are expected while it is being fixed.
- `retired` is terminal: it absorbs observations and refuses every command but `retire`.
- `released` is accepted everywhere (a run ends and releases every node it held, some of which
  may have turned suspect or drained meanwhile); it changes only `allocated` -> `ready`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class NodeState(StrEnum):
    """Where a node is in its life. Values are the wire/JSON spellings."""

    REGISTERED = "registered"
    PREFLIGHT = "preflight"
    READY = "ready"
    ALLOCATED = "allocated"
    SUSPECT = "suspect"
    DRAINED = "drained"
    REPAIR = "repair"
    UNREACHABLE = "unreachable"
    RETIRED = "retired"


class NodeEvent(StrEnum):
    """Something that happened to a node. Values are the spellings stored in its history."""

    REGISTERED = "registered"  # the agent said Hello
    REPORT_OK = "report_ok"
    REPORT_WARN = "report_warn"
    REPORT_CRITICAL = "report_critical"  # critical (or unknown) without a fatal action
    FATAL_EVENT = "fatal_event"  # critical with reset/reboot/service/drain, or a fatal XID
    PREFLIGHT_STARTED = "preflight_started"  # the controller began re-testing the node
    PREFLIGHT_PASSED = "preflight_passed"  # the gate admitted the node
    PREFLIGHT_FAILED = "preflight_failed"  # the gate rejected the node on its evidence
    ALLOCATED = "allocated"  # placed into a run
    RELEASED = "released"  # the run let the node go
    HEARTBEAT_LOST = "heartbeat_lost"
    HEARTBEAT_RESTORED = "heartbeat_restored"
    OPERATOR_DRAIN = "operator_drain"
    OPERATOR_UNDRAIN = "operator_undrain"
    REPAIR_STARTED = "repair_started"
    REPAIR_DONE = "repair_done"
    RETIRE = "retire"


INITIAL_STATE = NodeState.REGISTERED

#: Events that report what was observed; they are defined in every state and never raise.
OBSERVATIONS: frozenset[NodeEvent] = frozenset(
    {
        NodeEvent.REGISTERED,
        NodeEvent.REPORT_OK,
        NodeEvent.REPORT_WARN,
        NodeEvent.REPORT_CRITICAL,
        NodeEvent.FATAL_EVENT,
        NodeEvent.HEARTBEAT_LOST,
        NodeEvent.HEARTBEAT_RESTORED,
        NodeEvent.RELEASED,
    }
)

#: Events only an operator or the repair workflow sends; the only ways out of `drained`.
OPERATOR_EXITS_FROM_DRAINED: frozenset[NodeEvent] = frozenset(
    {
        NodeEvent.OPERATOR_UNDRAIN,
        NodeEvent.REPAIR_STARTED,
        NodeEvent.REPAIR_DONE,
        NodeEvent.RETIRE,
    }
)

_S = NodeState
_ALL = tuple(NodeState)
_IN_SERVICE = (_S.REGISTERED, _S.PREFLIGHT, _S.READY, _S.ALLOCATED, _S.SUSPECT)


def _same(states: tuple[NodeState, ...]) -> dict[NodeState, NodeState]:
    return {s: s for s in states}


def _to(target: NodeState, states: tuple[NodeState, ...]) -> dict[NodeState, NodeState]:
    return dict.fromkeys(states, target)


# Per event: which states accept it and where each goes. A state missing from an event's map
# means the event is illegal there. Every entry, self-loops included, is deliberate.
_EDGES: dict[NodeEvent, dict[NodeState, NodeState]] = {
    # Hello. A node we had lost is back, but must pass preflight again; elsewhere a re-Hello
    # (agent restart, controller restart) changes nothing: the evidence decides, not the Hello.
    NodeEvent.REGISTERED: {**_same(_ALL), _S.UNREACHABLE: _S.REGISTERED},
    # Healthy and warning sweeps never move a node: readiness comes from preflight, and a
    # suspect node is cleared by preflight, not by one good sweep.
    NodeEvent.REPORT_OK: _same(_ALL),
    NodeEvent.REPORT_WARN: _same(_ALL),
    # Critical: suspicion for anything in service; a report from an `unreachable` node proves
    # it is talking, and what it says is bad. Drained/repair/retired absorb it.
    NodeEvent.REPORT_CRITICAL: {
        **_to(_S.SUSPECT, (*_IN_SERVICE, _S.UNREACHABLE)),
        **_same((_S.DRAINED, _S.REPAIR, _S.RETIRED)),
    },
    # Fatal: take the node out of service at once, with the evidence in the history.
    NodeEvent.FATAL_EVENT: {
        **_to(_S.DRAINED, (*_IN_SERVICE, _S.UNREACHABLE)),
        **_same((_S.DRAINED, _S.REPAIR, _S.RETIRED)),
    },
    # Heartbeats: losing one makes an in-service node unreachable. A drained node stays
    # drained (connectivity is shown separately), so coming back can never undo a drain.
    NodeEvent.HEARTBEAT_LOST: {
        **_to(_S.UNREACHABLE, (*_IN_SERVICE, _S.UNREACHABLE)),
        **_same((_S.DRAINED, _S.REPAIR, _S.RETIRED)),
    },
    NodeEvent.HEARTBEAT_RESTORED: {**_same(_ALL), _S.UNREACHABLE: _S.REGISTERED},
    # A run let the node go: back to ready (freshness is the gate's job); no-op elsewhere.
    NodeEvent.RELEASED: {**_same(_ALL), _S.ALLOCATED: _S.READY},
    # Preflight re-tests a node that is in service and not busy with a run. A suspect node
    # gets here to be cleared; a ready one when its evidence went stale.
    NodeEvent.PREFLIGHT_STARTED: _to(
        _S.PREFLIGHT, (_S.REGISTERED, _S.PREFLIGHT, _S.READY, _S.SUSPECT)
    ),
    # The gate admitted it; fresh evidence may admit a registered/ready node without a
    # re-test. A suspect node must be re-tested first (through `preflight`).
    NodeEvent.PREFLIGHT_PASSED: _to(_S.READY, (_S.REGISTERED, _S.PREFLIGHT, _S.READY)),
    NodeEvent.PREFLIGHT_FAILED: _to(
        _S.SUSPECT, (_S.REGISTERED, _S.PREFLIGHT, _S.READY, _S.SUSPECT)
    ),
    # Only a ready node is placed; allocating twice is a caller bug.
    NodeEvent.ALLOCATED: {_S.READY: _S.ALLOCATED},
    # The operator may drain anything still alive (draining twice updates the reason;
    # draining a node in repair aborts the repair).
    NodeEvent.OPERATOR_DRAIN: _to(_S.DRAINED, tuple(s for s in _ALL if s is not _S.RETIRED)),
    NodeEvent.OPERATOR_UNDRAIN: {_S.DRAINED: _S.REGISTERED},
    # Repair starts from a drained node only: drain first, so nothing is scheduled onto it.
    NodeEvent.REPAIR_STARTED: {_S.DRAINED: _S.REPAIR},
    # Repaired (by us, or recorded by the operator for a fix done elsewhere): re-preflight.
    NodeEvent.REPAIR_DONE: _to(_S.REGISTERED, (_S.REPAIR, _S.DRAINED)),
    # Retire anything not running a job (release or drain it first); idempotent.
    NodeEvent.RETIRE: _to(_S.RETIRED, tuple(s for s in _ALL if s is not _S.ALLOCATED)),
}

#: The whole machine: (state, event) -> next state. Pairs not present are illegal.
TRANSITIONS: Mapping[tuple[NodeState, NodeEvent], NodeState] = MappingProxyType(
    {(state, event): target for event, row in _EDGES.items() for state, target in row.items()}
)


class IllegalTransition(ValueError):
    """`event` is not allowed in `state` (a command sent at the wrong time)."""

    def __init__(self, state: NodeState, event: NodeEvent) -> None:
        super().__init__(f"{event.value} is not allowed when a node is {state.value}")
        self.state = state
        self.event = event


def transition(state: NodeState, event: NodeEvent) -> NodeState:
    """The state after `event` in `state`; raises `IllegalTransition` when not allowed."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(state, event) from None


def allowed_events(state: NodeState) -> frozenset[NodeEvent]:
    """Every event `state` accepts."""
    return frozenset(event for (s, event) in TRANSITIONS if s is state)


_FATAL_ACTIONS = frozenset({"reset_gpu", "reboot_node", "service", "drain"})
_VERDICTS = frozenset({"ok", "warn", "critical", "unknown"})
_ACTIONS = frozenset({"none", "restart_app", "drain", "reset_gpu", "reboot_node", "service"})


def _norm(text: str, prefix: str) -> str:
    value = text.strip().lower()
    return value.removeprefix(prefix)


def event_for_verdict(verdict: str, action: str) -> NodeEvent | None:
    """The lifecycle event a report's verdict and recommended action stand for.

    - ok -> report_ok; warn -> report_warn.
    - critical with a fatal action (reset_gpu, reboot_node, service, drain) -> fatal_event,
      which drains: the node cannot serve until someone acts on it.
    - critical otherwise (none, restart_app) -> report_critical (suspect: re-test it).
    - unknown -> report_critical as well: a node whose health cannot be judged is not trusted
      until a preflight re-tests it (unknown with a fatal action is fatal, like critical).
    - an empty/unspecified verdict -> None (the report says nothing about health).

    Accepts the JSON spellings ("critical", "reboot_node") and the proto enum names
    ("SEVERITY_CRITICAL", "ACTION_REBOOT_NODE"), case-insensitively; an empty action means
    none. Anything else raises ValueError.
    """
    v = _norm(verdict, "severity_")
    a = _norm(action, "action_") or "none"
    if a == "unspecified":
        a = "none"
    if a not in _ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {sorted(_ACTIONS)}")
    if v in ("", "unspecified"):
        return None
    if v not in _VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {sorted(_VERDICTS)}")
    if v == "ok":
        return NodeEvent.REPORT_OK
    if v == "warn":
        return NodeEvent.REPORT_WARN
    return NodeEvent.FATAL_EVENT if a in _FATAL_ACTIONS else NodeEvent.REPORT_CRITICAL
