"""Rendering of a preflight gate for the operator CLI: the result as JSON and as a table (one
row per admitted node, one per rejection reason and note), and live progress bars while the
Preflight stream runs. Pure apart from the progress view, which draws on the console given."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from controller.cli_format import (
    SEVERITY_STYLE,
    JsonDict,
    format_age,
    gpu_of,
    severity_name,
    styled,
)
from protos.gpufleet.v1 import fleet_pb2 as pb


def reason_json(reason: pb.GateReason) -> JsonDict:
    """One rejection reason with its evidence."""
    return {
        "check": reason.check,
        "severity": severity_name(reason.severity),
        "gpu": gpu_of(reason),
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
    gpu = gpu_of(r)
    return (
        r.check,
        styled(severity_name(r.severity), SEVERITY_STYLE),
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
