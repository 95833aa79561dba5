"""The preflight gate: a pure judgement of one node's lifecycle state and evidence.

Rules, in order:

1. Lifecycle first. Only `registered`, `preflight` and `ready` nodes, and `allocated` nodes
   of the run being gated, are admissible. `suspect` is rejected and every required kind is
   re-tested (a suspicion invalidates cached evidence; the re-test is how a suspect node is
   cleared). `drained`, `repair`, `unreachable`, `retired` and nodes allocated to another run
   are rejected with nothing re-tested: testing them would be wasted or disruptive.
2. Freshness. For each required kind, the newest evidence (ties broken by id) must be no
   older than its TTL and taken no earlier than `NodeFacts.trusted_since`. Missing, stale or
   untrusted kinds reject the node for now and are listed in `retest`; stale evidence is not
   judged either way.
3. Findings. Every fresh piece of evidence (of any kind with a TTL) is judged: a finding
   whose severity and check the policy blocks rejects, with its evidence id and age; other
   non-ok findings become notes. Evidence whose verdict is blocking but has no findings
   rejects under the evidence kind's name.

A node is admitted when nothing rejects it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from controller.fleet.lifecycle import NodeState
from controller.fleet.model import (
    Evidence,
    GatePolicy,
    GateReason,
    GateVerdict,
    NodeFacts,
    Severity,
)

#: States a node may be admitted from (plus `allocated`, for the run it belongs to).
ADMISSIBLE_STATES: frozenset[NodeState] = frozenset(
    {NodeState.REGISTERED, NodeState.PREFLIGHT, NodeState.READY}
)

_STATE_SEVERITY: Mapping[NodeState, Severity] = {
    NodeState.SUSPECT: Severity.CRITICAL,
    NodeState.DRAINED: Severity.CRITICAL,
    NodeState.REPAIR: Severity.CRITICAL,
    NodeState.RETIRED: Severity.CRITICAL,
    NodeState.UNREACHABLE: Severity.UNKNOWN,
    NodeState.ALLOCATED: Severity.WARN,
}


def _lifecycle_reason(node: NodeFacts, run: str) -> GateReason | None:
    if node.state in ADMISSIBLE_STATES:
        return None
    if node.state is NodeState.ALLOCATED:
        if run and node.allocated_run == run:
            return None
        owner = node.allocated_run or "another run"
        message = f"node is allocated to {owner}"
    else:
        message = f"node is {node.state.value}"
        if node.state_reason:
            message += f": {node.state_reason}"
        if node.state is NodeState.SUSPECT:
            message += " (re-testing)"
    return GateReason("lifecycle", _STATE_SEVERITY[node.state], None, message)


def _age(evidence: Evidence, now: float) -> float:
    """Seconds since the evidence was taken; clock skew into the future counts as fresh."""
    return max(0.0, now - evidence.taken_at)


def _latest(evidence: Iterable[Evidence], policy: GatePolicy) -> dict[str, Evidence]:
    latest: dict[str, Evidence] = {}
    for item in evidence:
        if item.kind not in policy.ttl_s:
            continue
        best = latest.get(item.kind)
        # ties (same time and id) are broken on content, so input order never matters
        if best is None or (item.taken_at, item.id, repr(item)) > (
                best.taken_at, best.id, repr(best)):
            latest[item.kind] = item
    return latest


def _freshness_reason(
    kind: str, item: Evidence | None, node: NodeFacts, policy: GatePolicy, now: float
) -> GateReason | None:
    """Why `item` cannot be used for `kind` (missing, stale, untrusted), or None if fresh."""
    check = f"{kind}_evidence"
    if item is None:
        return GateReason(check, Severity.UNKNOWN, None, f"no {kind} evidence")
    age = _age(item, now)
    ttl = policy.ttl_s[kind]
    if age > ttl:
        message = f"{kind} evidence is stale: {age:.0f} s old, ttl {ttl:.0f} s"
        return GateReason(check, Severity.UNKNOWN, None, message, age, item.id)
    if item.taken_at < node.trusted_since:
        message = f"{kind} evidence predates the node's return to service"
        return GateReason(check, Severity.UNKNOWN, None, message, age, item.id)
    return None


def _judge(
    item: Evidence, policy: GatePolicy, now: float
) -> tuple[list[GateReason], list[GateReason]]:
    """Blocking reasons and notes from one fresh piece of evidence."""
    age = _age(item, now)
    if not item.findings:
        if item.verdict in policy.reject_severities:
            message = f"{item.kind} verdict is {item.verdict.value} with no findings"
            return [GateReason(item.kind, item.verdict, None, message, age, item.id)], []
        return [], []
    blocking: list[GateReason] = []
    notes: list[GateReason] = []
    for finding in item.findings:
        if finding.severity is Severity.OK:
            continue
        reason = GateReason(
            finding.check, finding.severity, finding.gpu, finding.message, age, item.id
        )
        (blocking if policy.blocks(finding) else notes).append(reason)
    return blocking, notes


def gate(
    node: NodeFacts,
    evidence: Sequence[Evidence],
    policy: GatePolicy,
    now: float,
    *,
    run: str = "",
) -> GateVerdict:
    """Admit or reject `node` for `run` on its lifecycle state and evidence at time `now`."""
    refusal = _lifecycle_reason(node, run)
    if refusal is not None:
        again = policy.required if node.state is NodeState.SUSPECT else frozenset()
        return GateVerdict(node.name, False, (refusal,), again)
    latest = _latest(evidence, policy)
    reasons: list[GateReason] = []
    notes: list[GateReason] = []
    retest: set[str] = set()
    for kind in sorted(policy.required):
        problem = _freshness_reason(kind, latest.get(kind), node, policy, now)
        if problem is not None:
            reasons.append(problem)
            retest.add(kind)
    for kind, item in sorted(latest.items()):
        if _freshness_reason(kind, item, node, policy, now) is not None:
            continue
        blocking, info = _judge(item, policy, now)
        reasons.extend(blocking)
        notes.extend(info)
    return GateVerdict(
        node=node.name,
        admitted=not reasons,
        reasons=tuple(reasons),
        retest=frozenset(retest),
        notes=tuple(notes),
    )


def plan_retests(
    candidates: Iterable[tuple[NodeFacts, Sequence[Evidence]]],
    policy: GatePolicy,
    now: float,
    *,
    run: str = "",
) -> dict[str, frozenset[str]]:
    """Which kinds of evidence to re-test on which node before gating; nodes needing none
    are left out."""
    plan: dict[str, frozenset[str]] = {}
    for node, evidence in candidates:
        retest = gate(node, evidence, policy, now, run=run).retest
        if retest:
            plan[node.name] = retest
    return plan
