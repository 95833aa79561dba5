"""Node lifecycle: every (state, event) pair against an independent spec, plus invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from controller.fleet.lifecycle import (
    INITIAL_STATE,
    OBSERVATIONS,
    OPERATOR_EXITS_FROM_DRAINED,
    TRANSITIONS,
    IllegalTransition,
    NodeEvent,
    NodeState,
    allowed_events,
    event_for_verdict,
    transition,
)

# The spec, written out independently of the implementation: one row per event, one column
# per state, "-" = illegal. Abbreviations below.
_COLUMNS = ("reg", "pre", "rdy", "alo", "sus", "drn", "rep", "unr", "ret")
_ABBR = dict(
    zip(
        _COLUMNS,
        (
            NodeState.REGISTERED,
            NodeState.PREFLIGHT,
            NodeState.READY,
            NodeState.ALLOCATED,
            NodeState.SUSPECT,
            NodeState.DRAINED,
            NodeState.REPAIR,
            NodeState.UNREACHABLE,
            NodeState.RETIRED,
        ),
        strict=True,
    )
)
_SPEC = """
registered          reg pre rdy alo sus drn rep reg ret
report_ok           reg pre rdy alo sus drn rep unr ret
report_warn         reg pre rdy alo sus drn rep unr ret
report_critical     sus sus sus sus sus drn rep sus ret
fatal_event         drn drn drn drn drn drn rep drn ret
heartbeat_lost      unr unr unr unr unr drn rep unr ret
heartbeat_restored  reg pre rdy alo sus drn rep reg ret
released            reg pre rdy rdy sus drn rep unr ret
preflight_started   pre pre pre -   pre -   -   -   -
preflight_passed    rdy rdy rdy -   -   -   -   -   -
preflight_failed    sus sus sus -   sus -   -   -   -
allocated           -   -   alo -   -   -   -   -   -
operator_drain      drn drn drn drn drn drn drn drn -
operator_undrain    -   -   -   -   -   reg -   -   -
repair_started      -   -   -   -   -   rep -   -   -
repair_done         -   -   -   -   -   reg reg -   -
retire              ret ret ret -   ret ret ret ret ret
"""


def _spec() -> dict[tuple[NodeState, NodeEvent], NodeState | None]:
    table: dict[tuple[NodeState, NodeEvent], NodeState | None] = {}
    for line in _SPEC.strip().splitlines():
        event_name, *cells = line.split()
        event = NodeEvent(event_name)
        for column, cell in zip(_COLUMNS, cells, strict=True):
            table[(_ABBR[column], event)] = None if cell == "-" else _ABBR[cell]
    return table


SPEC = _spec()


def test_spec_covers_every_pair() -> None:
    assert set(SPEC) == {(s, e) for s in NodeState for e in NodeEvent}


@pytest.mark.parametrize(("state", "event"), sorted(SPEC))
def test_every_pair_matches_spec(state: NodeState, event: NodeEvent) -> None:
    expected = SPEC[(state, event)]
    if expected is None:
        with pytest.raises(IllegalTransition) as info:
            transition(state, event)
        assert info.value.state is state
        assert info.value.event is event
        assert state.value in str(info.value) and event.value in str(info.value)
    else:
        assert transition(state, event) is expected


def test_table_has_no_entries_outside_spec() -> None:
    legal = {pair for pair, target in SPEC.items() if target is not None}
    assert set(TRANSITIONS) == legal


def test_observations_are_total() -> None:
    for state in NodeState:
        assert allowed_events(state) >= OBSERVATIONS, state


def test_initial_state_is_registered() -> None:
    assert INITIAL_STATE is NodeState.REGISTERED


def test_retired_is_terminal() -> None:
    for event in allowed_events(NodeState.RETIRED):
        assert transition(NodeState.RETIRED, event) is NodeState.RETIRED


def test_illegal_transition_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="operator_undrain is not allowed when a node is ready"):
        transition(NodeState.READY, NodeEvent.OPERATOR_UNDRAIN)


_events = st.lists(st.sampled_from(list(NodeEvent)), max_size=40)


def _run(state: NodeState, events: list[NodeEvent]) -> list[NodeState]:
    """Apply events, skipping illegal ones (as a server answering FAILED_PRECONDITION does)."""
    path = [state]
    for event in events:
        try:
            state = transition(state, event)
        except IllegalTransition:
            continue
        path.append(state)
    return path


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from(list(NodeState)), events=_events)
def test_random_sequences_stay_inside_the_machine(
    start: NodeState, events: list[NodeEvent]
) -> None:
    for state in _run(start, events):
        assert isinstance(state, NodeState)
        assert allowed_events(state), f"{state} is a dead end"


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.sampled_from(sorted(set(NodeEvent) - OPERATOR_EXITS_FROM_DRAINED))))
def test_drained_is_sticky_without_an_operator(events: list[NodeEvent]) -> None:
    assert _run(NodeState.DRAINED, events)[-1] is NodeState.DRAINED


@settings(max_examples=300, deadline=None)
@given(start=st.sampled_from(list(NodeState)), events=_events)
def test_ready_is_reached_only_through_preflight_passed_or_release(
    start: NodeState, events: list[NodeEvent]
) -> None:
    state = start
    for event in events:
        try:
            nxt = transition(state, event)
        except IllegalTransition:
            continue
        if nxt is NodeState.READY and state is not NodeState.READY:
            assert event in (NodeEvent.PREFLIGHT_PASSED, NodeEvent.RELEASED)
            if event is NodeEvent.RELEASED:
                assert state is NodeState.ALLOCATED
        state = nxt


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.sampled_from(sorted(OBSERVATIONS)), max_size=40))
def test_observations_never_raise(events: list[NodeEvent]) -> None:
    for start in NodeState:
        state = start
        for event in events:
            state = transition(state, event)
            assert state in NodeState  # an observation never raises nor invents a state


@pytest.mark.parametrize(
    ("verdict", "action", "expected"),
    [
        ("ok", "none", NodeEvent.REPORT_OK),
        ("ok", "", NodeEvent.REPORT_OK),
        ("warn", "restart_app", NodeEvent.REPORT_WARN),
        ("warn", "reboot_node", NodeEvent.REPORT_WARN),
        ("critical", "none", NodeEvent.REPORT_CRITICAL),
        ("critical", "restart_app", NodeEvent.REPORT_CRITICAL),
        ("critical", "drain", NodeEvent.FATAL_EVENT),
        ("critical", "reset_gpu", NodeEvent.FATAL_EVENT),
        ("critical", "reboot_node", NodeEvent.FATAL_EVENT),
        ("critical", "service", NodeEvent.FATAL_EVENT),
        ("unknown", "none", NodeEvent.REPORT_CRITICAL),
        ("unknown", "service", NodeEvent.FATAL_EVENT),
        ("SEVERITY_CRITICAL", "ACTION_REBOOT_NODE", NodeEvent.FATAL_EVENT),
        ("SEVERITY_OK", "ACTION_UNSPECIFIED", NodeEvent.REPORT_OK),
        (" Critical ", "Reset_GPU", NodeEvent.FATAL_EVENT),
        ("", "none", None),
        ("SEVERITY_UNSPECIFIED", "", None),
    ],
)
def test_event_for_verdict(verdict: str, action: str, expected: NodeEvent | None) -> None:
    assert event_for_verdict(verdict, action) is expected


@pytest.mark.parametrize(("verdict", "action"), [("fine", "none"), ("ok", "reinstall")])
def test_event_for_verdict_rejects_bad_input(verdict: str, action: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        event_for_verdict(verdict, action)


@pytest.mark.parametrize(
    ("verdict", "action", "state", "expected"),
    [
        ("critical", "reboot_node", NodeState.READY, NodeState.DRAINED),
        ("critical", "none", NodeState.ALLOCATED, NodeState.SUSPECT),
        ("ok", "none", NodeState.DRAINED, NodeState.DRAINED),
        ("ok", "none", NodeState.SUSPECT, NodeState.SUSPECT),
    ],
)
def test_reports_drive_the_machine(
    verdict: str, action: str, state: NodeState, expected: NodeState
) -> None:
    event = event_for_verdict(verdict, action)
    assert event is not None
    assert transition(state, event) is expected
