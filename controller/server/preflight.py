"""Preflight orchestration: gate on stored evidence, re-test only what is stale, gate again.

The judging is the pure gate (controller.fleet.gate) plus the fleet-level checks; this module
only gathers the inputs, sends CheckNow / RunBurnIn to the nodes whose evidence is stale,
awaits their answers (bounded), applies the preflight lifecycle events and streams progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

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

log = logging.getLogger(__name__)

_RETURN_FROM = ("unreachable", "drained", "repair")


@dataclass(frozen=True)
class PreflightSettings:
    """Defaults for Preflight requests that leave them at 0."""

    max_age_s: float = 300.0
    burnin_ttl_s: float = 6 * 3600.0
    timeout_s: float = 60.0
    check_window_s: float = 0.0
    burnin_sizes: tuple[int, ...] = (1 << 20, 16 << 20, 64 << 20)
    burnin_timeout_s: float = 300.0


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


def _directives_for(kinds: frozenset[str], row: NodeRow,
                    settings: PreflightSettings) -> list[fleet_pb2.Directive]:
    out: list[fleet_pb2.Directive] = []
    if EvidenceKind.HEALTH in kinds:
        out.append(fleet_pb2.Directive(check_now=fleet_pb2.CheckNow(
            window_s=settings.check_window_s)))
    if EvidenceKind.BURNIN in kinds:
        ranks = max(1, len(row.gpus))
        out.append(fleet_pb2.Directive(run_burnin=fleet_pb2.RunBurnIn(
            burnin_id=f"b-{uuid.uuid4().hex[:12]}", sizes_bytes=settings.burnin_sizes,
            warmup_iters=5, iters=20, world_size=ranks, rank_offset=0, local_ranks=ranks,
            master_addr="127.0.0.1", master_port=0, timeout_s=settings.burnin_timeout_s)))
    return out


async def _await_node(service: FleetService, node: str, ids: list[str],
                      timeout_s: float) -> tuple[str, str | None]:
    """(node, None) when every directive was answered ok, else (node, why not)."""
    try:
        outcomes: list[DirectiveOutcome] = await asyncio.gather(
            *(service.wait_directive(i, timeout_s) for i in ids))
    except TimeoutError:
        return node, f"no answer to the re-test within {timeout_s:g} s"
    failed = [o for o in outcomes if not o.ok]
    if failed:
        return node, f"re-test failed: {failed[0].message or failed[0].answer}"
    return node, None


async def _apply(service: FleetService, node: str, event: NodeEvent, cause: str) -> None:
    with contextlib.suppress(IllegalTransition, UnknownNode):
        await service.apply_event(node, event, cause=cause, actor="controller:preflight")


async def run_preflight(
    service: FleetService, request: fleet_pb2.PreflightRequest, settings: PreflightSettings,
) -> AsyncIterator[fleet_pb2.PreflightUpdate]:
    """Gate the requested nodes, re-testing stale evidence; yield progress, then the result."""
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
    waits: list[asyncio.Task[tuple[str, str | None]]] = []
    untested: dict[str, str] = {}
    tested: set[str] = set()
    for name, verdict in first.items():
        if not verdict.retest:
            continue
        if not service.connected(name):
            untested[name] = "not connected, so it could not be re-tested"
            continue
        await _apply(service, name, NodeEvent.PREFLIGHT_STARTED, "preflight re-test")
        try:
            ids = [service.send_directive(name, d)
                   for d in _directives_for(verdict.retest, snap.rows[name], settings)]
        except (NotConnected, DirectiveBacklog) as err:
            untested[name] = f"could not be re-tested: {err}"
            continue
        tested.add(name)
        waits.append(asyncio.create_task(_await_node(service, name, ids, timeout)))
    done = total - len(waits)
    yield _progress(total, done, len(waits), "retesting")
    try:
        for next_done in asyncio.as_completed(waits):
            name, why = await next_done
            if why is not None:
                untested[name] = why
            done += 1
            yield _progress(total, done, len(waits), "retesting", name)
    finally:
        for task in waits:
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
