"""Rendering of the fleet's nodes for the operator CLI: the node list, one node in detail (its
findings, hardware, burn-in and history) and the fleet's events, as JSON-able dicts and rich
tables. Pure: `now` is passed in where ages are shown."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group, RenderableType
from rich.table import Table

from controller.cli_format import (
    SEVERITY_STYLE,
    STATE_STYLE,
    JsonDict,
    action_name,
    gpu_of,
    severity_name,
    since,
    styled,
)
from protos.gpufleet.v1 import fleet_pb2 as pb

# ---------------------------------------------------------------- nodes


def node_json(view: pb.NodeView) -> JsonDict:
    """One node as JSON (the `nodes --json` element)."""
    return {
        "name": view.name,
        "state": view.state,
        "verdict": view.verdict,
        "sku": view.sku,
        "gpus": view.gpus,
        "nvlink_domain": view.nvlink_domain,
        "rack": view.rack,
        "connected": view.connected,
        "last_seen": view.last_seen,
        "state_reason": view.state_reason,
        "driver_version": view.driver_version,
        "hostname": view.hostname,
    }


def nodes_json(views: Iterable[pb.NodeView]) -> list[JsonDict]:
    """`gpufleet nodes --json`."""
    return [node_json(v) for v in views]


def nodes_table(views: Iterable[pb.NodeView], now: float) -> Table:
    """`gpufleet nodes` as a table."""
    table = Table(title="nodes", title_justify="left")
    for column in ("NAME", "STATE", "VERDICT", "SKU", "GPUS", "NVLINK DOMAIN", "RACK", "SEEN"):
        table.add_column(column, no_wrap=True)
    table.add_column("REASON")
    count = 0
    for v in views:
        count += 1
        seen = since(v.last_seen, now) + ("" if v.connected else " (offline)")
        table.add_row(
            v.name,
            styled(v.state, STATE_STYLE),
            styled(v.verdict, SEVERITY_STYLE),
            v.sku,
            str(v.gpus),
            v.nvlink_domain,
            v.rack,
            seen,
            v.state_reason,
        )
    table.caption = f"{count} node{'s' if count != 1 else ''}"
    return table


# ---------------------------------------------------------------- node show


def finding_json(finding: pb.Finding) -> JsonDict:
    """A finding as in `gpufleet-agent check --json`."""
    evidence: JsonDict = {}
    for key, value in sorted(finding.evidence.items()):
        kind = value.WhichOneof("kind")
        evidence[key] = getattr(value, kind) if kind else None
    return {
        "check": finding.check,
        "severity": severity_name(finding.severity),
        "gpu": gpu_of(finding),
        "message": finding.message,
        "action": action_name(finding.action),
        "evidence": evidence,
    }


def transition_json(t: pb.Transition) -> JsonDict:
    """One lifecycle transition of a node's history."""
    return {
        "from_state": t.from_state,
        "to_state": t.to_state,
        "cause": t.cause,
        "evidence_id": t.evidence_id,
        "at": t.at,
        "actor": t.actor,
    }


def node_detail_json(detail: pb.NodeDetail) -> JsonDict:
    """`gpufleet node show --json`: the node, its findings, GPUs, rails and history."""
    return {
        **node_json(detail.node),
        "findings_at": detail.findings_at,
        "findings": [finding_json(f) for f in detail.findings],
        "gpus_detail": [
            {
                "index": g.index,
                "uuid": g.uuid,
                "name": g.name,
                "serial": g.serial,
                "pci_bus_id": g.pci_bus_id,
                "vbios_version": g.vbios_version,
            }
            for g in detail.gpus
        ],
        "rails": [
            {
                "device": r.device,
                "port": r.port,
                "state": r.state,
                "rate_gbps": r.rate_gbps,
                "gpu": r.gpu if r.HasField("gpu") else None,
            }
            for r in detail.rails
        ],
        "history": [transition_json(t) for t in detail.history],
        "burnin": burnin_json(detail) if detail.burnin_at else None,
    }


def burnin_json(detail: pb.NodeDetail) -> JsonDict:
    """The node's latest burn-in, as `node show --json` gives it."""
    b = detail.burnin
    return {
        "at": detail.burnin_at, "passed": b.passed, "severity": severity_name(b.severity),
        "check": b.check, "message": b.message, "busbw_gbps": b.busbw_gbps,
        "cohort_median_gbps": b.cohort_median_gbps or None, "evidence_id": b.evidence_id,
        "sizes": [{"bytes": s.bytes, "busbw_gbps": s.busbw_gbps, "wrong": s.wrong}
                  for s in b.sizes],
    }


def burnin_line(detail: pb.NodeDetail, now: float) -> str:
    """One line for `node show`: the latest burn-in's result and age."""
    if not detail.burnin_at:
        return "none on record"
    b = detail.burnin
    median = f", cohort median {b.cohort_median_gbps:.3g}" if b.cohort_median_gbps else ""
    verdict = "passed" if b.passed else f"FAILED ({b.check})"
    return (f"{verdict}: busbw {b.busbw_gbps:.3g} GB/s{median}, "
            f"{since(detail.burnin_at, now)} ago")


def node_detail_view(detail: pb.NodeDetail, now: float) -> RenderableType:
    """`gpufleet node show`: a summary, the latest findings and the history."""
    v = detail.node
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in (
        ("node", v.name),
        ("state", styled(v.state, STATE_STYLE)),
        ("reason", v.state_reason or "-"),
        ("verdict", styled(v.verdict, SEVERITY_STYLE)),
        ("sku", f"{v.sku} ({v.gpus} GPUs), driver {v.driver_version or '-'}"),
        ("placement", f"rack {v.rack or '-'}, nvlink domain {v.nvlink_domain or '-'}"),
        ("seen", f"{since(v.last_seen, now)} ago, {'connected' if v.connected else 'offline'}"),
        ("burn-in", burnin_line(detail, now)),
    ):
        summary.add_row(key, value)

    findings = Table(
        title=f"findings ({since(detail.findings_at, now)} old)", title_justify="left"
    )
    for column in ("CHECK", "SEVERITY", "GPU", "ACTION", "MESSAGE"):
        findings.add_column(column)
    for f in detail.findings:
        gpu = gpu_of(f)
        findings.add_row(
            f.check,
            styled(severity_name(f.severity), SEVERITY_STYLE),
            "-" if gpu is None else str(gpu),
            action_name(f.action),
            f.message,
        )

    history = Table(title="history", title_justify="left")
    for column in ("AGE", "FROM", "TO", "CAUSE", "ACTOR", "EVIDENCE"):
        history.add_column(column)
    for t in detail.history:
        history.add_row(
            since(t.at, now),
            t.from_state or "-",
            styled(t.to_state, STATE_STYLE),
            t.cause,
            t.actor,
            t.evidence_id or "-",
        )
    return Group(summary, findings, history)


# ---------------------------------------------------------------- events


def event_json(event: pb.FleetEvent) -> JsonDict:
    """One fleet event."""
    return {
        "id": event.id,
        "node": event.node,
        "kind": event.kind,
        "message": event.message,
        "at": event.at,
        "detail": dict(sorted(event.detail.items())),
    }


def events_table(events: Iterable[pb.FleetEvent], now: float) -> Table:
    """`gpufleet events` as a table, in the order the controller gave (newest first)."""
    table = Table(title="events", title_justify="left")
    for column in ("AGE", "NODE", "KIND", "MESSAGE"):
        table.add_column(column)
    for e in events:
        table.add_row(since(e.at, now), e.node or "-", e.kind, e.message)
    return table
