"""FleetStore: the controller's durable fleet state in one SQLite file (WAL).

One FleetStore owns one connection and must be used from one thread at a time (the server keeps
its writer store on a dedicated writer thread). Writes happen in explicit transactions; a batch
of ingested messages is one transaction. Replays are harmless: reports and events are unique per
(node, seq) and inserted with INSERT OR IGNORE.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .inserts import insert_event, insert_evidence, insert_report, insert_result
from .queries import StoreReads
from .records import (
    Inbound,
    NodeIdentity,
    Registration,
    StoredBatch,
    StoredItem,
    TransitionRow,
)
from .runs import RunRows
from .schema import migrate

INITIAL_STATE = "registered"


class StoreError(RuntimeError):
    """A store operation could not be done (unknown node, stale state, ...)."""


class StaleState(StoreError):
    """A transition's from-state no longer matches the node's stored state."""


class FleetStore(StoreReads, RunRows):
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
                    item = insert_report(self._conn, node, seq, msg.report, received_at)
                    if item is not None and item.evidence_id is not None:
                        prev = health.get(node)
                        if prev is None or item.at >= prev[2]:
                            health[node] = (item.verdict, item.evidence_id, item.at)
                elif body == "event":
                    item = insert_event(self._conn, node, seq, msg.event, received_at)
                elif body == "result":
                    item = insert_result(self._conn, node, seq, msg.result, received_at)
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

    # ------------------------------------------------------------------ decisions applied

    def add_evidence(
        self, node: str, kind: str, verdict: str, detail: dict[str, Any], taken_at: float,
        source: str = "",
    ) -> int:
        """Record evidence produced by the controller itself (e.g. an operator drain)."""
        with self.transaction():
            return insert_evidence(
                self._conn, node, kind, verdict, json.dumps(detail), taken_at, source
            )

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
