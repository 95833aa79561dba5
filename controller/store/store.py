"""FleetStore: the controller's durable fleet state in one SQLite file (WAL).

One FleetStore owns one connection and must be used from one thread at a time (the server keeps
its writer store on a dedicated writer thread). Writes happen in explicit transactions; a batch
of ingested messages is one transaction. Replays are harmless: reports and events are unique per
(node, seq) and inserted with INSERT OR IGNORE.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protos.gpufleet.v1 import fleet_pb2

from .codec import ACTION_NAMES, SEVERITY_NAMES, finding_to_dict
from .records import (
    AuditRow,
    EventRow,
    EvidenceRow,
    Inbound,
    NodeIdentity,
    NodeRow,
    Registration,
    StoredBatch,
    StoredItem,
    TransitionRow,
)
from .schema import migrate

INITIAL_STATE = "registered"


class StoreError(RuntimeError):
    """A store operation could not be done (unknown node, stale state, ...)."""


class StaleState(StoreError):
    """A transition's from-state no longer matches the node's stored state."""


_NODE_COLUMNS = (
    "name, hostname, agent_version, sku, driver_version, cuda_driver_version, nvlink_domain, "
    "rack, boot_id, gpus, rails, state, state_reason, state_since, registered_at, last_seen, "
    "last_seq, verdict, health_evidence_id, health_at"
)


def _node_row(row: sqlite3.Row) -> NodeRow:
    return NodeRow(
        name=row[0],
        hostname=row[1],
        agent_version=row[2],
        sku=row[3],
        driver_version=row[4],
        cuda_driver_version=row[5],
        nvlink_domain=row[6],
        rack=row[7],
        boot_id=row[8],
        gpus=tuple(json.loads(row[9])),
        rails=tuple(json.loads(row[10])),
        state=row[11],
        state_reason=row[12],
        state_since=row[13],
        registered_at=row[14],
        last_seen=row[15],
        last_seq=row[16],
        verdict=row[17],
        health_evidence_id=row[18],
        health_at=row[19],
    )


def _xid_cause(xid: fleet_pb2.XidEvent) -> str:
    where = f" on gpu {xid.gpu}" if xid.HasField("gpu") else ""
    return f"xid {xid.xid}{where}"


class FleetStore:
    """Typed access to the fleet database."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path
        self._depth = 0

    @classmethod
    def open(
        cls, path: str | Path, *, readonly: bool = False, busy_timeout_s: float = 5.0
    ) -> FleetStore:
        """Open (creating and migrating unless readonly) the database at `path`."""
        db_path = Path(path)
        if readonly:
            uri = f"file:{db_path}?mode=ro"
            conn = sqlite3.connect(
                uri, uri=True, isolation_level=None, check_same_thread=False,
                timeout=busy_timeout_s,
            )
        else:
            db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                db_path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s
            )
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            migrate(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("PRAGMA cache_size = -32768")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
        return cls(conn, db_path)

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens on the last close)."""
        self._conn.close()

    # ------------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction (BEGIN IMMEDIATE); nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._conn.execute("ROLLBACK")
            raise
        self._depth = 0
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ registration

    def register_node(
        self, identity: NodeIdentity, now: float, *, initial_state: str = INITIAL_STATE
    ) -> Registration:
        """Insert or refresh a node from its Hello; return what it already has stored."""
        gpus = json.dumps(list(identity.gpus))
        rails = json.dumps(list(identity.rails))
        with self.transaction():
            row = self._conn.execute(
                "SELECT state, last_seq, boot_id FROM nodes WHERE name = ?", (identity.name,)
            ).fetchone()
            fields = (
                identity.hostname, identity.agent_version, identity.sku,
                identity.driver_version, identity.cuda_driver_version, identity.nvlink_domain,
                identity.rack, identity.boot_id, gpus, rails,
            )
            if row is None:
                self._conn.execute(
                    "INSERT INTO nodes (hostname, agent_version, sku, driver_version, "
                    "cuda_driver_version, nvlink_domain, rack, boot_id, gpus, rails, name, "
                    "state, state_since, registered_at, last_seen) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*fields, identity.name, initial_state, now, now, now),
                )
                self._insert_transition(
                    identity.name, "", initial_state, "registered", None, "controller", now
                )
                return Registration(identity.name, 0, initial_state, created=True)
            self._conn.execute(
                "UPDATE nodes SET hostname = ?, agent_version = ?, sku = ?, driver_version = ?, "
                "cuda_driver_version = ?, nvlink_domain = ?, rack = ?, boot_id = ?, gpus = ?, "
                "rails = ?, last_seen = MAX(last_seen, ?) WHERE name = ?",
                (*fields, now, identity.name),
            )
            if row[2] and identity.boot_id and row[2] != identity.boot_id:
                self.add_event(
                    identity.name, "agent_restart", "agent restarted (new boot id)", now,
                    {"previous_boot_id": row[2], "boot_id": identity.boot_id},
                )
            return Registration(identity.name, int(row[1]), str(row[0]), created=False)

    # ------------------------------------------------------------------ ingest

    def store_batch(
        self,
        items: Sequence[Inbound],
        *,
        after: Callable[[StoredBatch], None] | None = None,
    ) -> StoredBatch:
        """Store durable messages in one transaction; return max stored seq per node.

        `after` runs inside the same transaction with what was inserted, so decisions applied
        there (lifecycle transitions) commit atomically with the evidence that caused them.
        Messages whose (node, seq) is already stored count as duplicates and change nothing.
        """
        batch = StoredBatch()
        seen: dict[str, float] = {}
        health: dict[str, tuple[str, int, float]] = {}
        execute = self._conn.execute
        with self.transaction():
            for node, msg, received_at, _mono, _stream in items:
                seq = msg.seq
                body = msg.WhichOneof("body")
                item: StoredItem | None
                if body == "report":
                    item = self._insert_report(node, seq, msg.report, received_at)
                    if item is not None and item.evidence_id is not None:
                        prev = health.get(node)
                        if prev is None or item.at >= prev[2]:
                            health[node] = (item.verdict, item.evidence_id, item.at)
                elif body == "event":
                    item = self._insert_event(node, seq, msg.event, received_at)
                elif body == "result":
                    item = self._insert_result(node, seq, msg.result, received_at)
                else:
                    raise StoreError(f"{node} seq {seq}: a {body} message is not storable")
                if item is None:
                    batch.duplicates += 1
                else:
                    batch.stored.append(item)
                if seq > batch.max_seq.get(node, 0):
                    batch.max_seq[node] = seq
                if received_at > seen.get(node, 0.0):
                    seen[node] = received_at
            for node, top in batch.max_seq.items():
                row = execute(
                    "UPDATE nodes SET last_seq = MAX(last_seq, ?), last_seen = MAX(last_seen, ?) "
                    "WHERE name = ? RETURNING last_seq",
                    (top, seen[node], node),
                ).fetchone()
                if row is None:
                    raise StoreError(f"node {node!r} is not registered")
                batch.max_seq[node] = int(row[0])
            for node, (verdict, evidence_id, at) in health.items():
                execute(
                    "UPDATE nodes SET verdict = ?, health_evidence_id = ?, health_at = ? "
                    "WHERE name = ? AND COALESCE(health_at, -1e300) <= ?",
                    (verdict, evidence_id, at, node, at),
                )
            if after is not None:
                after(batch)
        return batch

    def _insert_report(
        self, node: str, seq: int, report: fleet_pb2.Report, received_at: float
    ) -> StoredItem | None:
        verdict = SEVERITY_NAMES.get(report.verdict, "unknown")
        action = ACTION_NAMES.get(report.action, "none")
        sampled_at = report.sampled_at or received_at
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO reports (node, seq, sampled_at, received_at, verdict, action, "
            "directive_id, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (node, seq, sampled_at, received_at, verdict, action, report.directive_id,
             report.SerializeToString()),
        )
        if cur.rowcount == 0:
            return None
        findings = [finding_to_dict(f) for f in report.findings]
        detail = json.dumps({"seq": seq, "action": action, "findings": findings})
        evidence_id = self._insert_evidence(
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

    def _insert_event(
        self, node: str, seq: int, event: fleet_pb2.Event, received_at: float
    ) -> StoredItem | None:
        kind = event.WhichOneof("kind") or "unknown"
        verdict = action = cause = ""
        at = received_at
        detail: dict[str, str] = {}
        if kind == "xid":
            xid = event.xid
            verdict = SEVERITY_NAMES.get(xid.severity, "unknown")
            action = ACTION_NAMES.get(xid.action, "none")
            at = xid.at or received_at
            cause = _xid_cause(xid)
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
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO events (node, seq, kind, message, at, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (node, seq, kind, message, at, json.dumps(detail)),
        )
        if cur.rowcount == 0:
            return None
        evidence_id = None
        if kind == "xid":
            evidence_id = self._insert_evidence(
                node, "xid", verdict, json.dumps(detail | {"message": message}), at, f"xid:{seq}"
            )
            self._conn.execute(
                "UPDATE events SET evidence_id = ? WHERE id = ?", (evidence_id, cur.lastrowid)
            )
        return StoredItem(node, seq, kind, at, verdict, action, evidence_id, "", cause)

    def _insert_result(
        self, node: str, seq: int, result: fleet_pb2.DirectiveResult, received_at: float
    ) -> StoredItem | None:
        detail: dict[str, Any] = {"directive_id": result.directive_id, "ok": result.ok,
                                  "message": result.message}
        cur = self._conn.execute(
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
            evidence_id = self._insert_evidence(
                node, "burnin", verdict, json.dumps(detail), received_at, f"result:{seq}"
            )
            self._conn.execute(
                "UPDATE events SET evidence_id = ? WHERE id = ?", (evidence_id, cur.lastrowid)
            )
        return StoredItem(
            node, seq, "result", received_at, verdict, "", evidence_id, result.directive_id,
            f"directive {result.directive_id} {'ok' if result.ok else 'failed'}",
        )

    def _insert_evidence(
        self, node: str, kind: str, verdict: str, detail: str, taken_at: float, source: str
    ) -> int:
        cur = self._conn.execute(
            "INSERT INTO evidence (node, kind, verdict, detail, taken_at, source) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (node, kind, verdict, detail, taken_at, source),
        )
        return int(cur.lastrowid or 0)

    # ------------------------------------------------------------------ decisions applied

    def add_evidence(
        self, node: str, kind: str, verdict: str, detail: dict[str, Any], taken_at: float,
        source: str = "",
    ) -> int:
        """Record evidence produced by the controller itself (e.g. an operator drain)."""
        with self.transaction():
            return self._insert_evidence(node, kind, verdict, json.dumps(detail), taken_at, source)

    def record_transition(
        self,
        node: str,
        from_state: str,
        to_state: str,
        *,
        cause: str,
        actor: str,
        at: float,
        evidence_id: int | None = None,
    ) -> TransitionRow:
        """Move `node` from `from_state` to `to_state` (compare-and-set) and log it.

        The caller decided the move (the pure lifecycle); this only applies it. Raises
        StaleState when the node is no longer in `from_state`.
        """
        with self.transaction():
            cur = self._conn.execute(
                "UPDATE nodes SET state = ?, state_reason = ?, state_since = ? "
                "WHERE name = ? AND state = ?",
                (to_state, cause, at, node, from_state),
            )
            if cur.rowcount == 0:
                current = self._conn.execute(
                    "SELECT state FROM nodes WHERE name = ?", (node,)
                ).fetchone()
                if current is None:
                    raise StoreError(f"unknown node {node!r}")
                raise StaleState(f"{node} is {current[0]}, not {from_state}")
            return self._insert_transition(
                node, from_state, to_state, cause, evidence_id, actor, at
            )

    def _insert_transition(
        self, node: str, from_state: str, to_state: str, cause: str, evidence_id: int | None,
        actor: str, at: float,
    ) -> TransitionRow:
        cur = self._conn.execute(
            "INSERT INTO transitions (node, from_state, to_state, cause, evidence_id, actor, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (node, from_state, to_state, cause, evidence_id, actor, at),
        )
        detail = {"from": from_state, "to": to_state, "actor": actor,
                  "evidence_id": "" if evidence_id is None else str(evidence_id)}
        self.add_event(node, "transition", f"{from_state or 'new'} -> {to_state}: {cause}", at,
                       detail)
        return TransitionRow(int(cur.lastrowid or 0), node, from_state, to_state, cause,
                             evidence_id, actor, at)

    def add_event(
        self, node: str, kind: str, message: str, at: float, detail: dict[str, str] | None = None
    ) -> int:
        """Record a controller-side fleet event."""
        cur = self._conn.execute(
            "INSERT INTO events (node, seq, kind, message, at, detail) "
            "VALUES (?, NULL, ?, ?, ?, ?)",
            (node, kind, message, at, json.dumps(detail or {})),
        )
        return int(cur.lastrowid or 0)

    def audit(
        self, actor: str, action: str, target: str, at: float, detail: dict[str, Any] | None = None
    ) -> int:
        """Append one operator action to the audit log."""
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (at, actor, action, target, json.dumps(detail or {})),
            )
            return int(cur.lastrowid or 0)

    # ------------------------------------------------------------------ retention

    def prune(self, before: float, *, limit: int = 5000) -> int:
        """Delete up to `limit` reports received before `before`, and health evidence taken
        before it that no node or transition cites; return how many rows went.

        Call repeatedly (each call is one short transaction) until it returns 0.
        """
        with self.transaction():
            reports = self._conn.execute(
                "DELETE FROM reports WHERE id IN (SELECT id FROM reports WHERE received_at < ? "
                "ORDER BY id LIMIT ?)",
                (before, limit),
            ).rowcount
            evidence = self._conn.execute(
                "DELETE FROM evidence WHERE id IN (SELECT id FROM evidence WHERE kind = 'health' "
                "AND taken_at < ? "
                "AND id NOT IN (SELECT health_evidence_id FROM nodes "
                "WHERE health_evidence_id IS NOT NULL) "
                "AND id NOT IN (SELECT evidence_id FROM transitions WHERE evidence_id IS NOT NULL) "
                "ORDER BY id LIMIT ?)",
                (before, limit),
            ).rowcount
        return int(reports) + int(evidence)

    # ------------------------------------------------------------------ reads

    def node(self, name: str) -> NodeRow | None:
        """One node, or None."""
        row = self._conn.execute(
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else _node_row(row)

    def nodes(
        self, *, state: str = "", sku: str = "", nvlink_domain: str = "",
        names: Sequence[str] = (),
    ) -> list[NodeRow]:
        """Nodes matching every non-empty filter, sorted by name."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("state", state), ("sku", sku), ("nvlink_domain", nvlink_domain)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if names:
            clauses.append(f"name IN ({', '.join('?' * len(names))})")
            params.extend(names)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(
            f"SELECT {_NODE_COLUMNS} FROM nodes{where} ORDER BY name", params
        ).fetchall()
        return [_node_row(r) for r in rows]

    def states(self, names: Iterable[str]) -> dict[str, str]:
        """The lifecycle state of each named node that exists."""
        wanted = list(names)
        out: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            rows = self._conn.execute(
                f"SELECT name, state FROM nodes WHERE name IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            out.update({str(n): str(st) for n, st in rows})
        return out

    def all_states(self) -> dict[str, str]:
        """The lifecycle state of every node."""
        return {str(n): str(st) for n, st in self._conn.execute("SELECT name, state FROM nodes")}

    def last_transition_at(
        self, node: str, to_state: str, from_states: Sequence[str]
    ) -> float | None:
        """When `node` last moved into `to_state` from one of `from_states`, or None."""
        row = self._conn.execute(
            "SELECT MAX(at) FROM transitions WHERE node = ? AND to_state = ? AND from_state IN "
            f"({', '.join('?' * len(from_states))})",
            (node, to_state, *from_states),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def last_seqs(self) -> dict[str, int]:
        """The highest stored seq of every node."""
        return {n: int(s) for n, s in self._conn.execute("SELECT name, last_seq FROM nodes")}

    def evidence(self, evidence_id: int) -> EvidenceRow | None:
        """One evidence row, or None."""
        row = self._conn.execute(
            "SELECT id, node, kind, verdict, detail, taken_at, source FROM evidence WHERE id = ?",
            (evidence_id,),
        ).fetchone()
        return None if row is None else EvidenceRow(
            row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6]
        )

    def latest_evidence(self, node: str, kind: str) -> EvidenceRow | None:
        """The newest evidence of `kind` for `node`, or None."""
        row = self._conn.execute(
            "SELECT id FROM evidence WHERE node = ? AND kind = ? ORDER BY taken_at DESC, id DESC "
            "LIMIT 1",
            (node, kind),
        ).fetchone()
        return None if row is None else self.evidence(int(row[0]))

    def reports(self, node: str, limit: int = 10) -> list[tuple[int, fleet_pb2.Report]]:
        """The newest `limit` reports of `node` as (seq, Report), newest first."""
        rows = self._conn.execute(
            "SELECT seq, report FROM reports WHERE node = ? ORDER BY seq DESC LIMIT ?",
            (node, limit),
        ).fetchall()
        return [(int(seq), fleet_pb2.Report.FromString(blob)) for seq, blob in rows]

    def transitions(self, node: str, limit: int = 50) -> list[TransitionRow]:
        """The newest `limit` transitions of `node`, oldest first."""
        rows = self._conn.execute(
            "SELECT id, node, from_state, to_state, cause, evidence_id, actor, at "
            "FROM transitions WHERE node = ? ORDER BY id DESC LIMIT ?",
            (node, limit),
        ).fetchall()
        return [TransitionRow(*r) for r in reversed(rows)]

    def events(self, *, node: str = "", since: float = 0.0, limit: int = 100) -> list[EventRow]:
        """Fleet events newest first, optionally for one node and since a time."""
        clauses = ["at >= ?"]
        params: list[Any] = [since]
        if node:
            clauses.append("node = ?")
            params.append(node)
        rows = self._conn.execute(
            "SELECT id, node, kind, message, at, detail FROM events WHERE "
            f"{' AND '.join(clauses)} ORDER BY at DESC, id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        return [EventRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]

    def audit_log(self, limit: int = 100) -> list[AuditRow]:
        """The newest `limit` operator actions, newest first."""
        rows = self._conn.execute(
            "SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [AuditRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]
