"""Typed reads of the fleet database (the read half of FleetStore)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from protos.gpufleet.v1 import fleet_pb2

from .records import AuditRow, EventRow, EvidenceRow, NodeRow, TransitionRow

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


class StoreReads:
    """Queries over one connection; FleetStore adds the writes."""

    _conn: sqlite3.Connection


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

    def state_reasons(self) -> dict[str, tuple[str, str]]:
        """Every node's (state, reason recorded with it)."""
        rows = self._conn.execute("SELECT name, state, state_reason FROM nodes")
        return {str(n): (str(st), str(why)) for n, st, why in rows}

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
