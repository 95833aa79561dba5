"""Pure rendering for the operator CLI: wire messages -> JSON-able dicts and rich tables.

Nothing here talks to the network or reads the clock; `now` is passed in where ages are shown.
The JSON shapes are the contract in the design ("more keys are welcome"):

- nodes: `[{"name", "state", "verdict", "sku", "gpus", "nvlink_domain", ...}]`
- preflight: `{"admitted": [node, ...], "rejected": [{"node", "reasons": [{"check",
  "severity", "gpu", "message", "evidence_age_s"}, ...]}]}`
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from protos.gpufleet.v1 import fleet_pb2 as pb

JsonDict = dict[str, Any]

_STATE_STYLE = {
    "ready": "green",
    "allocated": "cyan",
    "registered": "blue",
    "preflight": "blue",
    "suspect": "yellow",
    "unreachable": "magenta",
    "drained": "red",
    "repair": "red",
    "retired": "dim",
}
_SEVERITY_STYLE = {"ok": "green", "warn": "yellow", "unknown": "magenta", "critical": "red"}


def severity_name(value: int) -> str:
    """A wire Severity as its JSON spelling ("critical"); unspecified is "unknown"."""
    if value == pb.SEVERITY_UNSPECIFIED:
        return "unknown"
    return pb.Severity.Name(value).removeprefix("SEVERITY_").lower()


def action_name(value: int) -> str:
    """A wire Action as its JSON spelling ("reboot_node"); unspecified is "none"."""
    if value == pb.ACTION_UNSPECIFIED:
        return "none"
    return pb.Action.Name(value).removeprefix("ACTION_").lower()


def format_age(seconds: float | None) -> str:
    """A short human age: "5s", "3m", "2h", "4d"; "-" when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _since(at: float, now: float) -> str:
    return format_age(now - at) if at > 0 else "-"


def _styled(value: str, styles: dict[str, str]) -> Text:
    return Text(value, style=styles.get(value, ""))


def _gpu(message: pb.Finding | pb.GateReason) -> int | None:
    return message.gpu if message.HasField("gpu") else None


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
        seen = _since(v.last_seen, now) + ("" if v.connected else " (offline)")
        table.add_row(
            v.name,
            _styled(v.state, _STATE_STYLE),
            _styled(v.verdict, _SEVERITY_STYLE),
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
        "gpu": _gpu(finding),
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
            f"{_since(detail.burnin_at, now)} ago")


def node_detail_view(detail: pb.NodeDetail, now: float) -> RenderableType:
    """`gpufleet node show`: a summary, the latest findings and the history."""
    v = detail.node
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for key, value in (
        ("node", v.name),
        ("state", _styled(v.state, _STATE_STYLE)),
        ("reason", v.state_reason or "-"),
        ("verdict", _styled(v.verdict, _SEVERITY_STYLE)),
        ("sku", f"{v.sku} ({v.gpus} GPUs), driver {v.driver_version or '-'}"),
        ("placement", f"rack {v.rack or '-'}, nvlink domain {v.nvlink_domain or '-'}"),
        ("seen", f"{_since(v.last_seen, now)} ago, {'connected' if v.connected else 'offline'}"),
        ("burn-in", burnin_line(detail, now)),
    ):
        summary.add_row(key, value)

    findings = Table(
        title=f"findings ({_since(detail.findings_at, now)} old)", title_justify="left"
    )
    for column in ("CHECK", "SEVERITY", "GPU", "ACTION", "MESSAGE"):
        findings.add_column(column)
    for f in detail.findings:
        gpu = _gpu(f)
        findings.add_row(
            f.check,
            _styled(severity_name(f.severity), _SEVERITY_STYLE),
            "-" if gpu is None else str(gpu),
            action_name(f.action),
            f.message,
        )

    history = Table(title="history", title_justify="left")
    for column in ("AGE", "FROM", "TO", "CAUSE", "ACTOR", "EVIDENCE"):
        history.add_column(column)
    for t in detail.history:
        history.add_row(
            _since(t.at, now),
            t.from_state or "-",
            _styled(t.to_state, _STATE_STYLE),
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
        table.add_row(_since(e.at, now), e.node or "-", e.kind, e.message)
    return table


# ---------------------------------------------------------------- preflight


def reason_json(reason: pb.GateReason) -> JsonDict:
    """One rejection reason with its evidence."""
    return {
        "check": reason.check,
        "severity": severity_name(reason.severity),
        "gpu": _gpu(reason),
        "message": reason.message,
        "evidence_age_s": reason.evidence_age_s,
        "evidence_id": reason.evidence_id,
    }


def preflight_json(result: pb.PreflightResult) -> JsonDict:
    """`gpufleet preflight --json`; `notes` lists findings that did not block (warnings,
    fleet drift) per node."""
    return {
        "run": result.run,
        "admitted": [v.node for v in result.verdicts if v.admitted],
        "rejected": [
            {"node": v.node, "reasons": [reason_json(r) for r in v.reasons]}
            for v in result.verdicts
            if not v.admitted
        ],
        "notes": [
            {"node": v.node, "notes": [reason_json(r) for r in v.notes]}
            for v in result.verdicts
            if v.notes
        ],
    }


_NOTE = Text("note", style="dim")


def _reason_cells(r: pb.GateReason | None) -> tuple[RenderableType, ...]:
    if r is None:
        return ("", "", "", "", "")
    gpu = _gpu(r)
    return (
        r.check,
        _styled(severity_name(r.severity), _SEVERITY_STYLE),
        "-" if gpu is None else str(gpu),
        format_age(r.evidence_age_s) if r.evidence_id else "-",
        r.message,
    )


def preflight_table(result: pb.PreflightResult) -> Table:
    """`gpufleet preflight`: one row per admitted node, then one per rejection reason (so the
    rejections end up next to the summary at the bottom of a terminal)."""
    admitted = sum(1 for v in result.verdicts if v.admitted)
    title = f"preflight{' for ' + result.run if result.run else ''}"
    table = Table(title=title, title_justify="left")
    for column in ("NODE", "RESULT", "CHECK", "SEVERITY", "GPU", "EVIDENCE AGE", "MESSAGE"):
        table.add_column(column)
    for v in sorted(result.verdicts, key=lambda v: (not v.admitted, v.node)):
        if v.admitted:
            rows = [(Text("admitted", style="green"), None), *((_NOTE, r) for r in v.notes)]
        else:
            reasons = v.reasons or [pb.GateReason(message="no reason given")]
            rows = [(Text("rejected", style="red"), r) for r in reasons]
            rows += [(_NOTE, r) for r in v.notes]
        for i, (label, r) in enumerate(rows):
            table.add_row(v.node if i == 0 else "", label, *_reason_cells(r))
    table.caption = f"{admitted} admitted, {len(result.verdicts) - admitted} rejected"
    return table


class PreflightProgressView:
    """Live progress bars for a Preflight stream: nodes judged, and nodes being re-tested.

    Use as a context manager around the stream and call `update` with each progress message.
    """

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._judged = self._progress.add_task("judged", total=None, note="")
        self._retest = self._progress.add_task("re-tested", total=None, note="", visible=False)
        self._retest_total = 0

    def __enter__(self) -> PreflightProgressView:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, message: pb.PreflightProgress) -> None:
        """Show the latest counts; the note names the phase and the node that just finished.

        The re-test bar's total is the most nodes seen re-testing at once, and it fills as
        that number falls.
        """
        note = message.phase + (f" ({message.node})" if message.node else "")
        total = max(message.total, message.done)
        self._progress.update(self._judged, total=total, completed=message.done, note=note)
        self._retest_total = max(self._retest_total, message.retesting)
        if self._retest_total:
            self._progress.update(
                self._retest,
                total=self._retest_total,
                completed=self._retest_total - message.retesting,
                visible=True,
            )
        self._progress.refresh()
