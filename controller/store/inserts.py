"""Row inserts for ingested messages (plain functions on a connection, inside the caller's
transaction): a report, an event, a directive result, and the evidence each one yields."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from protos.gpufleet.v1 import fleet_pb2

from .codec import ACTION_NAMES, SEVERITY_NAMES, finding_to_dict
from .records import StoredItem


def xid_cause(xid: fleet_pb2.XidEvent) -> str:
    """A short description of an XID for causes: "xid 79 on gpu 3"."""
    where = f" on gpu {xid.gpu}" if xid.HasField("gpu") else ""
    return f"xid {xid.xid}{where}"


def insert_report(
    conn: sqlite3.Connection, node: str, seq: int, report: fleet_pb2.Report, received_at: float
) -> StoredItem | None:
    """Store a report (INSERT OR IGNORE) and its health evidence; None if a replay."""
    verdict = SEVERITY_NAMES.get(report.verdict, "unknown")
    action = ACTION_NAMES.get(report.action, "none")
    sampled_at = report.sampled_at or received_at
    cur = conn.execute(
        "INSERT OR IGNORE INTO reports (node, seq, sampled_at, received_at, verdict, action, "
        "directive_id, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (node, seq, sampled_at, received_at, verdict, action, report.directive_id,
         report.SerializeToString()),
    )
    if cur.rowcount == 0:
        return None
    findings = [finding_to_dict(f) for f in report.findings]
    detail = json.dumps({"seq": seq, "action": action, "findings": findings})
    evidence_id = insert_evidence(conn,
        node, "health", verdict, detail, sampled_at, f"report:{seq}"
    )
    worst = max(report.findings, key=lambda f: f.severity, default=None)
    cause = f"report verdict {verdict}"
    if worst is not None and worst.severity == report.verdict:
        cause += f": {worst.check}: {worst.message}"[:200]
    return StoredItem(
        node, seq, "report", sampled_at, verdict, action, evidence_id, report.directive_id,
        cause,
    )


def insert_event(
    conn: sqlite3.Connection, node: str, seq: int, event: fleet_pb2.Event, received_at: float
) -> StoredItem | None:
    """Store an event (and evidence for an XID); None if a replay."""
    kind = event.WhichOneof("kind") or "unknown"
    verdict = action = cause = ""
    at = received_at
    detail: dict[str, str] = {}
    if kind == "xid":
        xid = event.xid
        verdict = SEVERITY_NAMES.get(xid.severity, "unknown")
        action = ACTION_NAMES.get(xid.action, "none")
        at = xid.at or received_at
        cause = xid_cause(xid)
        message = f"{cause}: {xid.message}" if xid.message else cause
        detail = {
            "xid": str(xid.xid), "gpu": str(xid.gpu) if xid.HasField("gpu") else "",
            "pci_bus_id": xid.pci_bus_id, "source": xid.source, "severity": verdict,
            "action": action,
        }
    elif kind == "rank_exit":
        ex = event.rank_exit
        at = ex.at or received_at
        message = (
            f"run {ex.run_id} attempt {ex.attempt} rank {ex.rank} {ex.reason} "
            f"({ex.exit_code})"
        )
        cause = message
        detail = {
            "run_id": ex.run_id, "attempt": str(ex.attempt), "rank": str(ex.rank),
            "exit_code": str(ex.exit_code), "reason": ex.reason, "stderr_tail": ex.stderr_tail,
        }
    elif kind == "progress":
        pr = event.progress
        at = pr.at or received_at
        message = f"run {pr.run_id} rank {pr.rank} step {pr.step} loss {pr.loss:.4g}"
        detail = {"run_id": pr.run_id, "attempt": str(pr.attempt), "rank": str(pr.rank),
                  "step": str(pr.step), "loss": repr(pr.loss)}
    else:
        message = "empty event"
    cur = conn.execute(
        "INSERT OR IGNORE INTO events (node, seq, kind, message, at, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (node, seq, kind, message, at, json.dumps(detail)),
    )
    if cur.rowcount == 0:
        return None
    evidence_id = None
    if kind == "xid":
        evidence_id = insert_evidence(conn,
            node, "xid", verdict, json.dumps(detail | {"message": message}), at, f"xid:{seq}"
        )
        conn.execute(
            "UPDATE events SET evidence_id = ? WHERE id = ?", (evidence_id, cur.lastrowid)
        )
    return StoredItem(node, seq, kind, at, verdict, action, evidence_id, "", cause)


def insert_result(
    conn: sqlite3.Connection, node: str, seq: int, result: fleet_pb2.DirectiveResult,
    received_at: float,
) -> StoredItem | None:
    """Store a directive result (and burn-in evidence); None if a replay."""
    detail: dict[str, Any] = {"directive_id": result.directive_id, "ok": result.ok,
                              "message": result.message}
    cur = conn.execute(
        "INSERT OR IGNORE INTO events (node, seq, kind, message, at, detail) "
        "VALUES (?, ?, 'result', ?, ?, ?)",
        (node, seq, f"directive {result.directive_id}: {'ok' if result.ok else 'failed'}"
         f"{': ' + result.message if result.message else ''}", received_at,
         json.dumps({k: str(v) for k, v in detail.items()})),
    )
    if cur.rowcount == 0:
        return None
    evidence_id = None
    verdict = "ok" if result.ok else "critical"
    if result.WhichOneof("payload") == "burnin":
        burnin = result.burnin
        wrong = sum(size.wrong for size in burnin.sizes)
        good = result.ok and not burnin.timed_out and not burnin.error and wrong == 0
        verdict = "ok" if good else "critical"
        detail |= {
            "burnin_id": burnin.burnin_id, "backend": burnin.backend,
            "world_size": burnin.world_size, "timed_out": burnin.timed_out,
            "error": burnin.error, "duration_s": burnin.duration_s, "wrong": wrong,
            "sizes": [
                {"bytes": s.bytes, "time_us": s.time_us, "algbw_gbps": s.algbw_gbps,
                 "busbw_gbps": s.busbw_gbps, "wrong": s.wrong}
                for s in burnin.sizes
            ],
        }
        if not already_judged(conn, node, burnin.burnin_id):
            evidence_id = insert_evidence(conn,
                node, "burnin", verdict, json.dumps(detail), received_at, f"result:{seq}"
            )
            conn.execute(
                "UPDATE events SET evidence_id = ? WHERE id = ?", (evidence_id, cur.lastrowid)
            )
    return StoredItem(
        node, seq, "result", received_at, verdict, "", evidence_id, result.directive_id,
        f"directive {result.directive_id} {'ok' if result.ok else 'failed'}",
    )


def already_judged(conn: sqlite3.Connection, node: str, burnin_id: str) -> bool:
    """Whether the controller already stored its judged verdict for this burn-in on `node`.

    Then a raw result is a late answer (e.g. after the orchestrator called it timed out): it is
    kept as an event, but must not become newer "burnin" evidence that outranks the verdict."""
    if not burnin_id:
        return False
    row = conn.execute(
        "SELECT 1 FROM evidence WHERE node = ? AND kind = 'burnin' "
        "AND json_extract(detail, '$.judged') = 1 "
        "AND json_extract(detail, '$.burnin_id') = ? LIMIT 1", (node, burnin_id)).fetchone()
    return row is not None


def insert_evidence(
    conn: sqlite3.Connection, node: str, kind: str, verdict: str, detail: str, taken_at: float,
    source: str,
) -> int:
    """Insert one evidence row; return its id."""
    cur = conn.execute(
        "INSERT INTO evidence (node, kind, verdict, detail, taken_at, source) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (node, kind, verdict, detail, taken_at, source),
    )
    return int(cur.lastrowid or 0)
