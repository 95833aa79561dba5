"""The supervisor's runs in the fleet database: one snapshot row per run (replaced on every
save) and the run's step history (appended, never rewritten). The store does not interpret the
snapshot; `controller.supervisor.persist` owns its format.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class StoredRun:
    """One run as stored: its snapshot (JSON text) and step history rows."""

    name: str
    state: str
    created_at: float
    updated_at: float
    record: str
    steps: tuple[tuple[int, int, float, float], ...]  # (attempt, step, end_at, step_time_s)


class RunRows:
    """Run persistence, mixed into FleetStore (which provides the connection)."""

    _conn: sqlite3.Connection

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One write transaction on the autocommit connection."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def save_run(self, name: str, state: str, created_at: float, updated_at: float,
                 record: str, new_steps: Iterable[tuple[int, int, float, float]] = (),
                 fresh: bool = False) -> None:
        """Write the run's snapshot and append its new steps in one transaction. `fresh`: a new
        run under this name replaces the old one and its step history."""
        with self._immediate() as conn:
            if fresh:
                conn.execute("DELETE FROM run_steps WHERE run = ?", (name,))
            conn.execute(
                "INSERT INTO runs (name, state, created_at, updated_at, record) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET state = excluded.state,"
                " created_at = excluded.created_at, updated_at = excluded.updated_at,"
                " record = excluded.record",
                (name, state, created_at, updated_at, record))
            _insert_steps(conn, name, new_steps)

    def append_run_steps(self, name: str,
                         steps: Iterable[tuple[int, int, float, float]]) -> None:
        """Append steps to a saved run's history (its snapshot stays as it is)."""
        with self._immediate() as conn:
            _insert_steps(conn, name, steps)

    def prune_runs(self, live_states: Sequence[str], keep: int) -> int:
        """Delete all but the `keep` most recently updated runs that are not live (and their
        steps); returns how many runs went."""
        marks = ", ".join("?" * len(live_states))
        with self._immediate() as conn:
            old = [name for (name,) in conn.execute(
                f"SELECT name FROM runs WHERE state NOT IN ({marks}) "
                "ORDER BY updated_at DESC LIMIT -1 OFFSET ?", (*live_states, keep)).fetchall()]
            for name in old:
                conn.execute("DELETE FROM run_steps WHERE run = ?", (name,))
                conn.execute("DELETE FROM runs WHERE name = ?", (name,))
        return len(old)

    def stored_runs(self, states: Sequence[str] | None = None, limit: int | None = None
                    ) -> list[StoredRun]:
        """The most recently updated runs (in those states; at most `limit`), newest first,
        with their steps."""
        where, args = "", []
        if states is not None:
            where = f"WHERE state IN ({', '.join('?' * len(states))})"
            args = list(states)
        rows = self._conn.execute(
            f"SELECT name, state, created_at, updated_at, record FROM runs {where} "
            "ORDER BY updated_at DESC LIMIT ?", (*args, -1 if limit is None else limit)).fetchall()
        out = []
        for name, state, created_at, updated_at, record in rows:
            steps = self._conn.execute(
                "SELECT attempt, step, end_at, step_time_s FROM run_steps WHERE run = ? "
                "ORDER BY end_at, rowid", (name,)).fetchall()
            out.append(StoredRun(name, state, created_at, updated_at, record,
                                 tuple((int(a), int(s), float(e), float(t))
                                       for a, s, e, t in steps)))
        return out


def _insert_steps(conn: sqlite3.Connection, name: str,
                  steps: Iterable[tuple[int, int, float, float]]) -> None:
    conn.executemany("INSERT INTO run_steps (run, attempt, step, end_at, step_time_s) "
                     "VALUES (?, ?, ?, ?, ?)", [(name, *row) for row in steps])
