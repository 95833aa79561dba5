"""Preflight gate: table-driven scenarios and properties of the pure `gate` function."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings, strategies as st

from controller.fleet.gate import ADMISSIBLE_STATES, gate, plan_retests
from controller.fleet.lifecycle import NodeState
from controller.fleet.model import (
    Evidence,
    EvidenceKind,
    GateFinding,
    GatePolicy,
    NodeFacts,
    Severity,
)

NOW = 1_700_000_000.0
HEALTH = EvidenceKind.HEALTH
BURNIN = EvidenceKind.BURNIN
POLICY = GatePolicy()  # health 300 s, burn-in 6 h, health required
BURNIN_POLICY = POLICY.with_burnin()


def ev(
    kind: str,
    age: float,
    verdict: Severity = Severity.OK,
    *findings: GateFinding,
    id: str = "",
) -> Evidence:
    return Evidence(id or f"{kind}-{age:g}", kind, verdict, tuple(findings), NOW - age)


def node(state: NodeState = NodeState.READY, **kw: str | float) -> NodeFacts:
    return NodeFacts("n1", state, **kw)  # type: ignore[arg-type]


XID79 = GateFinding("xid", Severity.CRITICAL, 3, "XID 79: GPU fell off the bus", "reboot_node")
NVML_UNKNOWN = GateFinding("ecc", Severity.UNKNOWN, 1, "ECC counters unreadable")
HOT = GateFinding("temperature", Severity.WARN, 0, "GPU 0 at 86 C")


@dataclass(frozen=True)
class Case:
    name: str
    node: NodeFacts
    evidence: tuple[Evidence, ...]
    policy: GatePolicy
    admitted: bool
    retest: frozenset[str]
    checks: tuple[str, ...]  # the rejecting reasons' checks, in order
    run: str = ""


CASES = [
    Case("fresh pass admits", node(), (ev(HEALTH, 10),), POLICY, True, frozenset(), ()),
    Case("ttl boundary is still fresh", node(), (ev(HEALTH, 300),), POLICY, True, frozenset(), ()),
    Case(
        "stale health retests only health",
        node(),
        (ev(HEALTH, 301), ev(BURNIN, 60)),
        BURNIN_POLICY,
        False,
        frozenset({HEALTH}),
        ("health_evidence",),
    ),
    Case(
        "stale burn-in retests only burn-in",
        node(),
        (ev(HEALTH, 10), ev(BURNIN, 6 * 3600 + 1)),
        BURNIN_POLICY,
        False,
        frozenset({BURNIN}),
        ("burnin_evidence",),
    ),
    Case(
        "fresh health and burn-in admit",
        node(),
        (ev(HEALTH, 10), ev(BURNIN, 5 * 3600)),
        BURNIN_POLICY,
        True,
        frozenset(),
        (),
    ),
    Case(
        "missing evidence is retested",
        node(NodeState.REGISTERED),
        (),
        BURNIN_POLICY,
        False,
        frozenset({HEALTH, BURNIN}),
        ("burnin_evidence", "health_evidence"),
    ),
    Case(
        "burn-in not required: stale burn-in ignored",
        node(),
        (ev(HEALTH, 10), ev(BURNIN, 10 * 3600, Severity.CRITICAL)),
        POLICY,
        True,
        frozenset(),
        (),
    ),
    Case(
        "fresh critical burn-in rejects even when not required",
        node(),
        (ev(HEALTH, 10), ev(BURNIN, 60, Severity.CRITICAL)),
        POLICY,
        False,
        frozenset(),
        ("burnin",),
    ),
    Case(
        "critical finding rejects",
        node(),
        (ev(HEALTH, 42, Severity.CRITICAL, XID79),),
        POLICY,
        False,
        frozenset(),
        ("xid",),
    ),
    Case(
        "unknown on a blocking check rejects",
        node(),
        (ev(HEALTH, 5, Severity.UNKNOWN, NVML_UNKNOWN),),
        POLICY,
        False,
        frozenset(),
        ("ecc",),
    ),
    Case(
        "unknown on a non-blocking check is only a note",
        node(),
        (ev(HEALTH, 5, Severity.UNKNOWN, NVML_UNKNOWN),),
        GatePolicy(blocking_checks=frozenset({"xid"})),
        True,
        frozenset(),
        (),
    ),
    Case(
        "warn does not reject by default",
        node(),
        (ev(HEALTH, 5, Severity.WARN, HOT),),
        POLICY,
        True,
        frozenset(),
        (),
    ),
    Case(
        "a strict policy rejects warnings",
        node(),
        (ev(HEALTH, 5, Severity.WARN, HOT),),
        GatePolicy(reject_severities=frozenset(Severity) - {Severity.OK}),
        False,
        frozenset(),
        ("temperature",),
    ),
    Case(
        "newest evidence of a kind wins",
        node(),
        (ev(HEALTH, 100, Severity.CRITICAL, XID79), ev(HEALTH, 10)),
        POLICY,
        True,
        frozenset(),
        (),
    ),
    Case(
        "stale critical evidence is re-tested, not judged",
        node(),
        (ev(HEALTH, 900, Severity.CRITICAL, XID79),),
        POLICY,
        False,
        frozenset({HEALTH}),
        ("health_evidence",),
    ),
    Case(
        "evidence from before the node's return is untrusted",
        node(NodeState.REGISTERED, trusted_since=NOW - 30),
        (ev(HEALTH, 10), ev(BURNIN, 3600)),
        BURNIN_POLICY,
        False,
        frozenset({BURNIN}),
        ("burnin_evidence",),
    ),
    Case(
        "evidence from the future counts as fresh",
        node(),
        (ev(HEALTH, -20),),
        POLICY,
        True,
        frozenset(),
        (),
    ),
    Case(
        "drained rejects without retest",
        node(NodeState.DRAINED, state_reason="operator: bad fan"),
        (ev(HEALTH, 10),),
        POLICY,
        False,
        frozenset(),
        ("lifecycle",),
    ),
    Case(
        "suspect rejects and retests everything required",
        node(NodeState.SUSPECT),
        (ev(HEALTH, 10), ev(BURNIN, 60)),
        BURNIN_POLICY,
        False,
        frozenset({HEALTH, BURNIN}),
        ("lifecycle",),
    ),
    *(
        Case(
            f"{state.value} rejects without retest",
            node(state),
            (ev(HEALTH, 10),),
            POLICY,
            False,
            frozenset(),
            ("lifecycle",),
        )
        for state in (NodeState.REPAIR, NodeState.UNREACHABLE, NodeState.RETIRED)
    ),
    Case(
        "allocated to another run rejects",
        node(NodeState.ALLOCATED, allocated_run="llama"),
        (ev(HEALTH, 10),),
        POLICY,
        False,
        frozenset(),
        ("lifecycle",),
        run="deepseek",
    ),
    Case(
        "allocated to this run is admissible",
        node(NodeState.ALLOCATED, allocated_run="deepseek"),
        (ev(HEALTH, 10),),
        POLICY,
        True,
        frozenset(),
        (),
        run="deepseek",
    ),
    Case(
        "allocated with no run named rejects",
        node(NodeState.ALLOCATED, allocated_run="deepseek"),
        (ev(HEALTH, 10),),
        POLICY,
        False,
        frozenset(),
        ("lifecycle",),
    ),
    Case(
        "evidence of an unknown kind is ignored",
        node(),
        (ev(HEALTH, 10), ev("dcgm_diag", 10, Severity.CRITICAL)),
        POLICY,
        True,
        frozenset(),
        (),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gate(case: Case) -> None:
    verdict = gate(case.node, case.evidence, case.policy, NOW, run=case.run)
    assert verdict.node == "n1"
    assert verdict.admitted is case.admitted
    assert verdict.retest == case.retest
    assert tuple(r.check for r in verdict.reasons) == case.checks


def test_critical_rejection_carries_the_evidence() -> None:
    verdict = gate(node(), [ev(HEALTH, 42, Severity.CRITICAL, XID79, id="r-7")], POLICY, NOW)
    (reason,) = verdict.reasons
    assert reason.severity is Severity.CRITICAL
    assert reason.gpu == 3
    assert reason.message == "XID 79: GPU fell off the bus"
    assert reason.evidence_age_s == pytest.approx(42)
    assert reason.evidence_id == "r-7"


def test_stale_reason_names_age_and_ttl() -> None:
    verdict = gate(node(), [ev(HEALTH, 412, id="old")], POLICY, NOW)
    (reason,) = verdict.reasons
    assert reason.evidence_id == "old"
    assert reason.evidence_age_s == pytest.approx(412)
    assert "412 s old" in reason.message and "ttl 300 s" in reason.message


def test_drained_reason_includes_why() -> None:
    verdict = gate(node(NodeState.DRAINED, state_reason="XID 79 on GPU 3"), [], POLICY, NOW)
    assert verdict.reasons[0].message == "node is drained: XID 79 on GPU 3"
    assert verdict.reasons[0].severity is Severity.CRITICAL


def test_warnings_become_notes() -> None:
    verdict = gate(node(), [ev(HEALTH, 5, Severity.WARN, HOT)], POLICY, NOW)
    assert verdict.admitted
    assert [n.check for n in verdict.notes] == ["temperature"]


def test_plan_retests_lists_only_nodes_needing_work() -> None:
    candidates: list[tuple[NodeFacts, list[Evidence]]] = [
        (NodeFacts("fresh", NodeState.READY), [ev(HEALTH, 1), ev(BURNIN, 60)]),
        (NodeFacts("stale", NodeState.READY), [ev(HEALTH, 1000), ev(BURNIN, 60)]),
        (NodeFacts("new", NodeState.REGISTERED), []),
        (NodeFacts("drained", NodeState.DRAINED), []),
    ]
    plan = plan_retests(candidates, BURNIN_POLICY, NOW)
    assert plan == {"stale": frozenset({HEALTH}), "new": frozenset({HEALTH, BURNIN})}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl_s": {"health": 0.0}}, "ttl for 'health' must be > 0"),
        ({"required": frozenset({"nccl"})}, "required kind 'nccl' has no ttl"),
        ({"reject_severities": frozenset({Severity.OK})}, "must not contain ok"),
    ],
)
def test_bad_policy_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GatePolicy(**kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------- properties

_findings = st.builds(
    GateFinding,
    check=st.sampled_from(["xid", "ecc", "temperature", "nvlink"]),
    severity=st.sampled_from(list(Severity)),
    gpu=st.none() | st.integers(0, 7),
)
_evidence = st.builds(
    Evidence,
    id=st.text("abc", min_size=1, max_size=3),
    kind=st.sampled_from([HEALTH, BURNIN, "other"]),
    verdict=st.sampled_from(list(Severity)),
    findings=st.lists(_findings, max_size=3).map(tuple),
    taken_at=st.floats(NOW - 30_000, NOW + 10),
)
_nodes = st.builds(
    NodeFacts,
    name=st.just("n"),
    state=st.sampled_from(list(NodeState)),
    allocated_run=st.sampled_from(["", "r"]),
    trusted_since=st.sampled_from([0.0, NOW - 1000]),
)
_policies = st.sampled_from([POLICY, BURNIN_POLICY, GatePolicy(blocking_checks=frozenset())])


@settings(max_examples=300, deadline=None)
@given(n=_nodes, evidence=st.lists(_evidence, max_size=6), policy=_policies)
def test_verdict_is_consistent(n: NodeFacts, evidence: list[Evidence], policy: GatePolicy) -> None:
    verdict = gate(n, evidence, policy, NOW, run="r")
    assert verdict.admitted == (not verdict.reasons)
    assert verdict.retest <= policy.required
    if verdict.admitted:
        assert not verdict.retest
    admissible = n.state in ADMISSIBLE_STATES or (
        n.state is NodeState.ALLOCATED and n.allocated_run == "r"
    )
    if not admissible:
        assert not verdict.admitted
        assert bool(verdict.retest) == (n.state is NodeState.SUSPECT)


@settings(max_examples=200, deadline=None)
@given(
    n=_nodes,
    evidence=st.lists(_evidence, max_size=6),
    policy=_policies,
    data=st.data(),
)
def test_order_of_evidence_does_not_matter(
    n: NodeFacts, evidence: list[Evidence], policy: GatePolicy, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(evidence))
    assert gate(n, evidence, policy, NOW) == gate(n, shuffled, policy, NOW)


@settings(max_examples=200, deadline=None)
@given(
    evidence=st.lists(_evidence, max_size=6),
    policy=_policies,
    later=st.floats(0, 30_000),
)
def test_staleness_only_grows_with_time(
    evidence: list[Evidence], policy: GatePolicy, later: float
) -> None:
    n = NodeFacts("n", NodeState.READY)
    assert gate(n, evidence, policy, NOW).retest <= gate(n, evidence, policy, NOW + later).retest
