"""Preflight orchestration: gate on stored evidence, re-test only what is stale, gate again.

The judging is the pure gate (controller.fleet.gate) plus the fleet-level checks; this module
only gathers the inputs, re-tests the nodes whose evidence is stale — stale health by a CheckNow
each (its answer awaited for the request's timeout), stale burn-in through the burn-in
orchestrator (`controller.burnin.retest`: the nodes' single-node burn-ins judged against the
SKU floor and their cohort and stored as verdicts, exactly as `gpufleet burnin` does, bounded
by the burn-in timeout) — applies the preflight lifecycle events and streams progress (phase
"retesting" for health answers, "burn-in" for burn-ins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from controller.burnin import retest  # a module: retest → orchestrator → controller.server → here
from controller.burnin.judge import DEFAULT_TARGETS, BurnInTarget
from controller.burnin.params import BurninDefaults
from controller.fleet.fleet_checks import check_fleet
from controller.fleet.gate import gate
from controller.fleet.lifecycle import IllegalTransition, NodeEvent, NodeState
from controller.fleet.model import (
    Evidence,
    EvidenceKind,
    GateFinding,
    GatePolicy,
    GateReason,
    GateVerdict,
    NodeFacts,
    NodeInventory,
    Severity,
)
from controller.fleet.wire import verdict_to_wire
from controller.store import EvidenceRow, FleetStore, NodeRow
from protos.gpufleet.v1 import fleet_pb2

from .directives import DirectiveOutcome, NotConnected
from .service import FleetService, UnknownNode
from .streams import DirectiveBacklog

if TYPE_CHECKING:  # a cycle at run time: orchestrator → controller.server → here
    from controller.burnin.orchestrator import JudgedSink

log = logging.getLogger(__name__)

_RETURN_FROM = ("unreachable", "drained", "repair")
HEALTH_PHASE, BURNIN_PHASE = "retesting", "burn-in"
#: (node, why it could not be re-tested or None, phase) as one part of a node's re-test ends
News = tuple[str, str | None, str]


@dataclass(frozen=True)
class PreflightSettings:
    """Defaults for Preflight requests that leave them at 0."""

    max_age_s: float = 300.0
    burnin_ttl_s: float = 6 * 3600.0
    timeout_s: float = 60.0
    check_window_s: float = 0.0
    burnin_sizes: tuple[int, ...] = (1 << 20, 16 << 20, 64 << 20)
    burnin_timeout_s: float = 300.0
    #: per-SKU burn-in floors and cohort rules, for `gpufleet burnin` and preflight's re-test
    burnin_targets: Mapping[str, BurnInTarget] = field(default_factory=lambda: DEFAULT_TARGETS)

    def burnin_defaults(self, rendezvous_host: str | None = None) -> BurninDefaults:
        """What a burn-in leaving sizes and timeout at 0 gets (and where groups rendezvous)."""
        return BurninDefaults(sizes=self.burnin_sizes, timeout_s=self.burnin_timeout_s,
                              rendezvous_host=rendezvous_host)


@dataclass(frozen=True)
class Snapshot:
    """What the gate needs, read in one go from the store."""

    rows: dict[str, NodeRow]
    evidence: dict[str, list[Evidence]]
    facts: dict[str, NodeFacts]


def _severity(word: Any) -> Severity:
    try:
        return Severity(str(word))
    except ValueError:
        return Severity.UNKNOWN


def evidence_from_row(row: EvidenceRow) -> Evidence:
    """A stored evidence row as the gate's Evidence."""
    findings: tuple[GateFinding, ...] = ()
    if row.kind == EvidenceKind.HEALTH:
        findings = tuple(
            GateFinding(str(f.get("check", "")), _severity(f.get("severity")),
                        f.get("gpu") if isinstance(f.get("gpu"), int) else None,
                        str(f.get("message", "")), str(f.get("action", "none")))
            for f in row.detail.get("findings", []) if isinstance(f, dict)
        )
    elif row.kind == EvidenceKind.BURNIN and row.verdict != "ok":
        why = row.detail.get("error") or (
            "timed out" if row.detail.get("timed_out") is True
            else f"{row.detail.get('wrong', 0)} wrong results"
        )
        findings = (GateFinding("burnin", _severity(row.verdict), None, f"burn-in failed: {why}"),)
    return Evidence(str(row.id), row.kind, _severity(row.verdict), findings, row.taken_at)


def inventory_from_row(row: NodeRow) -> NodeInventory:
    """A stored node as the fleet checks' inventory."""
    def joined(key: str) -> str:
        return ",".join(sorted({str(g.get(key, "")) for g in row.gpus if g.get(key)}))

    return NodeInventory(row.name, row.sku, len(row.gpus), {
        "driver": row.driver_version, "cuda_driver": row.cuda_driver_version,
        "vbios": joined("vbios_version"), "inforom": joined("inforom_image_version"),
    })


def read_snapshot(store: FleetStore, names: Sequence[str] | None) -> Snapshot:
    """Nodes (all, for the fleet checks) and the evidence of the `names` ones (all if None)."""
    rows = {row.name: row for row in store.nodes()}
    wanted = rows.keys() if names is None else [n for n in names if n in rows]
    evidence: dict[str, list[Evidence]] = {}
    facts: dict[str, NodeFacts] = {}
    for name in wanted:
        items = [store.latest_evidence(name, kind) for kind in EvidenceKind]
        evidence[name] = [evidence_from_row(e) for e in items if e is not None]
        row = rows[name]
        trusted = store.last_transition_at(name, NodeState.REGISTERED, _RETURN_FROM) or 0.0
        facts[name] = NodeFacts(name, NodeState(row.state), row.state_reason,
                                trusted_since=trusted)
    return Snapshot(rows, evidence, facts)


def fleet_reasons(
    rows: Iterable[NodeRow], policy: GatePolicy
) -> dict[str, tuple[list[GateReason], list[GateReason]]]:
    """Blocking reasons and notes per node from the fleet-level checks (drift, GPU count)."""
    out: dict[str, tuple[list[GateReason], list[GateReason]]] = {}
    for finding in check_fleet(inventory_from_row(r) for r in rows):
        if finding.node is None:
            continue
        blocking, notes = out.setdefault(finding.node, ([], []))
        reason = GateReason(finding.check, finding.severity, None, finding.message)
        (blocking if finding.severity in policy.reject_severities else notes).append(reason)
    return out


def _progress(total: int, done: int, retesting: int, phase: str,
              node: str = "") -> fleet_pb2.PreflightUpdate:
    return fleet_pb2.PreflightUpdate(progress=fleet_pb2.PreflightProgress(
        total=total, done=done, retesting=retesting, phase=phase, node=node))


async def _check(service: FleetService, node: str, directive_id: str, timeout_s: float,
                 news: asyncio.Queue[News]) -> None:
    """Await a node's CheckNow answer; tell `news` whether it was answered ok."""
    why: str | None = None
    try:
        outcome: DirectiveOutcome = await service.wait_directive(directive_id, timeout_s)
        if not outcome.ok:
            why = f"re-test failed: {outcome.message or outcome.answer}"
    except TimeoutError:
        why = f"no answer to the re-test within {timeout_s:g} s"
    await news.put((node, why, HEALTH_PHASE))


async def _burn_in(service: FleetService, nodes: Sequence[str], settings: PreflightSettings,
                   news: asyncio.Queue[News], on_judged: JudgedSink | None) -> None:
    """Burn in `nodes` through the orchestrator (judged, stored); tell `news` as each ends."""
    left = set(nodes)
    why = "the burn-in ended without a result for it"
    try:  # whatever fails here, every node gets its answer: the gate never waits forever
        params = retest.retest_params(nodes, settings.burnin_defaults(), settings.burnin_ttl_s)
        async for node, skipped in retest.burnin_retest(retest.ServiceHost(service), params,
                                                        settings.burnin_targets, on_judged):
            left.discard(node)
            await news.put((node, skipped, BURNIN_PHASE))
    except Exception as err:
        log.exception("preflight burn-in re-test of %s failed", ", ".join(nodes))
        why = f"the burn-in re-test failed: {err}"
    finally:
        for node in sorted(left):
            news.put_nowait((node, why, BURNIN_PHASE))


async def _apply(service: FleetService, node: str, event: NodeEvent, cause: str) -> None:
    with contextlib.suppress(IllegalTransition, UnknownNode):
        await service.apply_event(node, event, cause=cause, actor="controller:preflight")


async def run_preflight(
    service: FleetService, request: fleet_pb2.PreflightRequest, settings: PreflightSettings,
    on_judged: JudgedSink | None = None,
) -> AsyncIterator[fleet_pb2.PreflightUpdate]:
    """Gate the requested nodes, re-testing stale evidence; yield progress, then the result.
    `on_judged` is told of every burn-in verdict the re-test stores (the burn-in metrics)."""
    max_age = request.max_age_s if request.max_age_s > 0 else settings.max_age_s
    timeout = request.timeout_s if request.timeout_s > 0 else settings.timeout_s
    policy = GatePolicy(ttl_s={EvidenceKind.HEALTH: max_age,
                               EvidenceKind.BURNIN: settings.burnin_ttl_s})
    if request.burnin:
        policy = policy.with_burnin()
    names = None if request.all else list(dict.fromkeys(request.nodes))
    snap = await service.read(lambda store: read_snapshot(store, names))
    if names is None:
        names = [n for n, r in snap.rows.items() if r.state != NodeState.RETIRED]
    total = len(names)
    yield _progress(total, 0, 0, "judging")
    now = service.clock.time()
    first = {n: gate(snap.facts[n], snap.evidence[n], policy, now, run=request.run)
             for n in names if n in snap.facts}
    news: asyncio.Queue[News] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []
    parts: dict[str, set[str]] = {}  # the phases of each node's re-test still running
    untested: dict[str, str] = {}
    for name, verdict in first.items():
        if not verdict.retest:
            continue
        if not service.connected(name):
            untested[name] = "not connected, so it could not be re-tested"
            continue
        await _apply(service, name, NodeEvent.PREFLIGHT_STARTED, "preflight re-test")
        if EvidenceKind.HEALTH in verdict.retest:
            try:
                directive_id = service.send_directive(name, fleet_pb2.Directive(
                    check_now=fleet_pb2.CheckNow(window_s=settings.check_window_s)))
            except (NotConnected, DirectiveBacklog) as err:
                untested[name] = f"could not be re-tested: {err}"
                continue
            tasks.append(asyncio.create_task(_check(service, name, directive_id, timeout, news)))
            parts[name] = {HEALTH_PHASE}
        if EvidenceKind.BURNIN in verdict.retest:
            parts.setdefault(name, set()).add(BURNIN_PHASE)
    tested = set(parts)
    burning = [n for n, phases in parts.items() if BURNIN_PHASE in phases]
    burn = (asyncio.create_task(_burn_in(service, burning, settings, news, on_judged))
            if burning else None)
    tasks += [burn] if burn is not None else []
    retesting = len(parts)
    done = total - retesting
    yield _progress(total, done, retesting, HEALTH_PHASE)
    try:
        while any(parts.values()):
            name, why, phase = await news.get()
            running = parts.get(name, set())
            if phase in running:
                running.discard(phase)
                if not running:
                    done += 1
                if why is not None:
                    untested[name] = "; ".join(filter(None, (untested.get(name), why)))
            yield _progress(total, done, retesting, phase, name)
        if burn is not None:
            await burn  # a node's burn-in ends before its pass is judged and stored
    finally:
        for task in tasks:
            task.cancel()
    if tested:
        fresh = await service.read(lambda store: read_snapshot(store, sorted(tested)))
        snap = replace(snap, evidence=snap.evidence | fresh.evidence,
                       facts=snap.facts | fresh.facts)
    now = service.clock.time()
    by_fleet = fleet_reasons(snap.rows.values(), policy)
    result = fleet_pb2.PreflightResult(run=request.run)
    for name in names:
        if name not in snap.facts:
            result.verdicts.append(fleet_pb2.NodeVerdict(node=name, admitted=False, reasons=[
                fleet_pb2.GateReason(check="registration", severity=fleet_pb2.SEVERITY_UNKNOWN,
                                     message="node is not registered")]))
            continue
        facts = snap.facts[name]
        verdict = gate(facts, snap.evidence[name], policy, now, run=request.run)
        if name in tested and facts.state is NodeState.SUSPECT:
            # the re-test's own evidence made it suspect: show that evidence, not the state
            retested = gate(replace(facts, state=NodeState.PREFLIGHT), snap.evidence[name],
                            policy, now, run=request.run)
            if not retested.admitted:
                verdict = retested
        blocking, notes = by_fleet.get(name, ([], []))
        extra = list(blocking)
        if name in untested and not verdict.admitted:
            extra.append(GateReason("retest", Severity.UNKNOWN, None, untested[name]))
        verdict = GateVerdict(name, verdict.admitted and not blocking,
                              verdict.reasons + tuple(extra), verdict.retest,
                              verdict.notes + tuple(notes))
        wire = verdict_to_wire(verdict)
        for note in verdict_to_wire(replace(verdict, reasons=verdict.notes)).reasons:
            wire.notes.append(note)
        result.verdicts.append(wire)
        judged = name in tested or not verdict.retest
        if verdict.admitted:
            await _apply(service, name, NodeEvent.PREFLIGHT_PASSED, "preflight admitted")
        elif judged:
            first_reason = verdict.reasons[0] if verdict.reasons else None
            cause = "preflight rejected" + (
                f": {first_reason.check}: {first_reason.message}" if first_reason else "")
            await _apply(service, name, NodeEvent.PREFLIGHT_FAILED, cause[:300])
    yield fleet_pb2.PreflightUpdate(result=result)
