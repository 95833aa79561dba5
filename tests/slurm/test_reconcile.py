"""reconcile(): gpufleet's node states -> Slurm drains/resumes (pure), and its reasons."""

from __future__ import annotations

import pytest

from controller.fleet.lifecycle import NodeState
from controller.slurm.fake import FakeSlurm
from controller.slurm.model import SlurmNode
from controller.slurm.reconcile import (
    INTENT,
    MAX_REASON_CHARS,
    Drain,
    FleetNodeView,
    Resume,
    SlurmIntent,
    drain_reason,
    held_by_others,
    reconcile,
    sanitize_reason,
)

S = NodeState
IDLE = SlurmNode("n1", "idle")
OURS = SlurmNode("n1", "idle", frozenset({"drain"}), "gpufleet: old finding (evidence 1)", "root")
OURS_BUSY = SlurmNode("n1", "allocated", frozenset({"drain"}), "gpufleet: x (evidence 1)", "root")
OPERATOR = SlurmNode("n1", "idle", frozenset({"drain"}), "PSU swap ticket 881", "alice")
AGENT = SlurmNode("n1", "idle", frozenset({"drain"}), "gpufleet-agent: xid gpu3", "root")
SLURM_DOWN = SlurmNode("n1", "down", frozenset({"not_responding"}), "Not responding", "slurm")
DOWN_NO_REASON = SlurmNode("n1", "down")
XID = FleetNodeView(S.DRAINED, "fatal_event: XID 79", 7901)
XID_REASON = "gpufleet: fatal_event: XID 79 (evidence 7901)"


def _one(view: FleetNodeView, node: SlurmNode) -> list[Drain | Resume]:
    return reconcile({"n1": view}, {"n1": node})


def test_every_gpufleet_state_has_an_intent() -> None:
    assert set(INTENT) == set(NodeState)
    assert {s for s, i in INTENT.items() if i is SlurmIntent.RESUME} == {S.READY, S.ALLOCATED}
    assert {s for s, i in INTENT.items() if i is SlurmIntent.DRAIN} == {
        S.SUSPECT, S.DRAINED, S.REPAIR, S.RETIRED}


@pytest.mark.parametrize("state", [S.SUSPECT, S.DRAINED, S.REPAIR, S.RETIRED])
def test_unfit_node_in_service_is_drained_with_gpufleets_reason(state: NodeState) -> None:
    view = FleetNodeView(state, "fatal_event: XID 79", 7901)
    assert _one(view, IDLE) == [Drain("n1", XID_REASON)]
    assert _one(view, DOWN_NO_REASON) == [Drain("n1", XID_REASON)]


@pytest.mark.parametrize("state", [S.READY, S.ALLOCATED])
def test_fit_node_drained_by_gpufleet_is_resumed(state: NodeState) -> None:
    assert _one(FleetNodeView(state), OURS) == [Resume("n1", OURS.reason)]
    assert _one(FleetNodeView(state), OURS_BUSY) == [Resume("n1", OURS_BUSY.reason)]


@pytest.mark.parametrize("state", [S.REGISTERED, S.PREFLIGHT, S.UNREACHABLE])
def test_holding_states_keep_our_drain_and_add_none(state: NodeState) -> None:
    assert _one(FleetNodeView(state), OURS) == []
    assert _one(FleetNodeView(state), IDLE) == []


@pytest.mark.parametrize("node", [OPERATOR, AGENT, SLURM_DOWN])
@pytest.mark.parametrize("state", list(NodeState))
def test_someone_elses_drain_or_down_is_never_resumed_or_reworded(
        node: SlurmNode, state: NodeState) -> None:
    assert _one(FleetNodeView(state, "anything", 5), node) == []


def test_changed_finding_rewords_our_own_drain_only() -> None:
    assert _one(XID, OURS) == [Drain("n1", XID_REASON, OURS.reason)]
    assert _one(XID, OPERATOR) == []


def test_already_matching_means_no_action() -> None:
    matching = SlurmNode("n1", "idle", frozenset({"drain"}), XID_REASON, "root")
    assert _one(XID, matching) == []
    assert _one(FleetNodeView(S.READY), IDLE) == []


def test_nodes_known_to_one_side_only_are_left_alone_and_output_is_ordered() -> None:
    views = {"b": XID, "a": XID, "gone": XID}
    slurm = {n: SlurmNode(n, "idle") for n in ("a", "b", "slurm-only")}
    assert [a.node for a in reconcile(views, slurm)] == ["a", "b"]


def test_a_second_pass_after_applying_is_empty() -> None:
    nodes = [SlurmNode(f"n{i}", "idle") for i in range(6)]
    fake = FakeSlurm([*nodes, SlurmNode("n6", "idle", frozenset({"drain"}), "gpufleet: s", "r")])
    views = {"n0": XID, "n1": FleetNodeView(S.SUSPECT, 'crit "quoted" | pipe\nnewline', "e9"),
             "n2": FleetNodeView(S.READY), "n3": FleetNodeView(S.RETIRED),
             "n4": FleetNodeView(S.REGISTERED), "n5": FleetNodeView(S.REPAIR, "x" * 500, 3),
             "n6": FleetNodeView(S.ALLOCATED)}
    actions = reconcile(views, {n.name: n for n in fake.nodes()})
    assert [type(a).__name__ + ":" + a.node for a in actions] == [
        "Drain:n0", "Drain:n1", "Drain:n3", "Drain:n5", "Resume:n6"]
    for action in actions:
        if isinstance(action, Drain):
            fake.drain(action.node, action.reason)
        else:
            fake.resume(action.node)
    assert reconcile(views, {n.name: n for n in fake.nodes()}) == []


def test_custom_owner_tag_decides_ownership() -> None:
    mine = SlurmNode("n1", "idle", frozenset({"drain"}), "fleetA: bad", "root")
    assert reconcile({"n1": FleetNodeView(S.READY)}, {"n1": mine}, "fleetA:") == [
        Resume("n1", "fleetA: bad")]
    assert reconcile({"n1": FleetNodeView(S.READY)}, {"n1": mine}) == []
    with pytest.raises(ValueError, match="owner tag"):
        reconcile({}, {}, owner_tag="bad|tag")
    with pytest.raises(ValueError, match="owner tag"):
        reconcile({}, {}, owner_tag="")


def test_reasons_are_sanitised_bounded_and_keep_tag_and_evidence() -> None:
    assert sanitize_reason('a|b "c"\n\td=e\x00 \u00e9') == "a b c d e"
    long = drain_reason(FleetNodeView(S.SUSPECT, "y" * 1000, "ev-77"))
    assert len(long) == MAX_REASON_CHARS
    assert long.startswith("gpufleet: yyy") and long.endswith("... (evidence ev-77)")
    assert drain_reason(FleetNodeView(S.RETIRED)) == "gpufleet: retired"
    assert drain_reason(FleetNodeView(S.SUSPECT, "", 0)) == "gpufleet: suspect (evidence 0)"
    with pytest.raises(ValueError):
        sanitize_reason("x", limit=3)


def test_a_state_gpufleet_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError, match="exploded"):
        reconcile({"n1": FleetNodeView("exploded")}, {"n1": IDLE})  # type: ignore[arg-type]


def test_held_by_others_lists_fit_nodes_someone_else_keeps_out() -> None:
    views = {"n1": FleetNodeView(S.READY), "n2": FleetNodeView(S.READY), "n3": XID}
    slurm = {"n1": OPERATOR, "n2": SlurmNode("n2", "idle"),
             "n3": SlurmNode("n3", "idle", frozenset({"drain"}), "someone", "bob")}
    assert held_by_others(views, slurm) == ["n1"]
