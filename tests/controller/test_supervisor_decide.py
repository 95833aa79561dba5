"""Pure supervisor decisions: root cause, spares from the same domain, budget, hangs."""

from __future__ import annotations

import pytest

from controller.supervisor.decide import (
    TERMINAL,
    TRANSITIONS,
    Complete,
    Continue,
    Failure,
    FailureKind,
    GiveUp,
    IllegalRunTransition,
    Restart,
    RunEvent,
    RunState,
    RunView,
    decide,
    find_hangs,
    root_cause,
    run_transition,
)

NODES = ("a0", "a1", "b0", "b1")
DOMAIN = {"a0": "A", "a1": "A", "a2": "A", "b0": "B", "b1": "B", "b2": "B"}


def _view(*failures: Failure, used: int = 0, budget: int = 3,
          spares: dict[str, tuple[str, ...]] | None = None,
          exited: frozenset[int] = frozenset()) -> RunView:
    return RunView(attempt=used + 1, restarts_used=used, restart_budget=budget, world_size=8,
                   nodes=NODES, domain_of=DOMAIN,
                   spares=spares if spares is not None else {"A": ("a2",), "B": ("b2",)},
                   failures=failures, exited_ok=exited)


def test_no_failure_continues_until_every_rank_exits_ok() -> None:
    assert decide(_view()) == Continue()
    assert decide(_view(exited=frozenset(range(7)))) == Continue()
    assert decide(_view(exited=frozenset(range(8)))) == Complete()


def test_fatal_xid_replaces_the_node_with_a_spare_from_its_domain() -> None:
    xid = Failure(FailureKind.NODE_FATAL, "b1", 10.0, "XID 79", evidence_id="ev-9")
    echo = Failure(FailureKind.RANK_EXIT, "a0", 10.4, "connection closed by peer", rank=0)
    decision = decide(_view(echo, xid))
    assert isinstance(decision, Restart)
    assert decision.root_cause == xid
    assert decision.replace == {"b1": "b2"}
    assert [f.node for f in decision.take_out] == ["b1"]


def test_plain_rank_crash_restarts_in_place() -> None:
    crash = Failure(FailureKind.RANK_EXIT, "a1", 5.0, "exit 17", rank=3)
    decision = decide(_view(crash))
    assert isinstance(decision, Restart) and decision.replace == {}


def test_root_cause_is_earliest_and_node_cause_wins_a_tie() -> None:
    exit_ = Failure(FailureKind.RANK_EXIT, "a0", 5.0, "exit 1", rank=0)
    fatal = Failure(FailureKind.NODE_FATAL, "a1", 5.0, "XID 48")
    later = Failure(FailureKind.NODE_FATAL, "b0", 9.0, "XID 79")
    assert root_cause([later, exit_, fatal]) == fatal


def test_no_spare_in_the_domain_gives_up_with_a_reason() -> None:
    xid = Failure(FailureKind.NODE_FATAL, "a0", 1.0, "XID 79")
    decision = decide(_view(xid, spares={"A": (), "B": ("b2",)}))
    assert isinstance(decision, GiveUp)
    assert "domain 'A'" in decision.reason


def test_spare_from_another_domain_is_never_used() -> None:
    xid = Failure(FailureKind.NODE_FATAL, "a0", 1.0, "XID 79")
    decision = decide(_view(xid, spares={"B": ("b2",)}))
    assert isinstance(decision, GiveUp)


def test_two_failed_nodes_in_one_domain_get_two_different_spares() -> None:
    f1 = Failure(FailureKind.NODE_FATAL, "a0", 1.0, "XID 79")
    f2 = Failure(FailureKind.NODE_UNREACHABLE, "a1", 2.0, "heartbeat lost")
    decision = decide(_view(f1, f2, spares={"A": ("a2", "a3"), "B": ()}))
    assert isinstance(decision, Restart)
    assert decision.replace == {"a0": "a2", "a1": "a3"}


def test_budget_stops_a_crash_loop() -> None:
    crash = Failure(FailureKind.RANK_EXIT, "a1", 5.0, "exit 17", rank=3)
    decision = decide(_view(crash, used=3, budget=3))
    assert isinstance(decision, GiveUp)
    assert "budget of 3 exhausted" in decision.reason and decision.root_cause == crash


def test_hang_without_spare_retries_in_place() -> None:
    hang = Failure(FailureKind.RANK_HANG, "a0", 1.0, "no step for 31 s", rank=0)
    decision = decide(_view(hang, spares={}))
    assert isinstance(decision, Restart) and decision.replace == {}


def test_a_hang_of_every_node_implicates_none_of_them() -> None:
    everyone = [Failure(FailureKind.RANK_HANG, node, 1.0 + i, "no step within the startup "
                        "timeout", rank=2 * i) for i, node in enumerate(NODES)]
    decision = decide(_view(*everyone))
    assert isinstance(decision, Restart)
    assert decision.replace == {} and decision.take_out == ()  # no spare spent, none suspect
    some = decide(_view(*everyone[:3]))  # three of four: those three are suspects
    assert isinstance(some, Restart) and len(some.take_out) == 3


def test_find_hangs() -> None:
    ranks = {0: "a0", 1: "a0", 2: "a1"}
    hangs = find_hangs({0: 100.0, 1: 70.0}, ranks, attempt_started_at=50.0, now=101.0,
                       hang_timeout_s=30.0, startup_timeout_s=60.0)
    assert [(h.rank, h.node) for h in hangs] == [(1, "a0")]
    hangs = find_hangs({0: 100.0, 1: 100.0}, ranks, attempt_started_at=30.0, now=101.0,
                       hang_timeout_s=30.0, startup_timeout_s=60.0)
    assert [h.rank for h in hangs] == [2] and "startup" in hangs[0].detail


def test_run_state_table() -> None:
    assert run_transition(RunState.RUNNING, RunEvent.FAILURE) is RunState.RESTARTING
    for state in TERMINAL:
        assert not any(s == state for s, _ in TRANSITIONS)  # nothing leaves a terminal state
        with pytest.raises(IllegalRunTransition):
            run_transition(state, RunEvent.STEPPED)
