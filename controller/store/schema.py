"""Schema migrations by version (SQLite `PRAGMA user_version`).

Each migration runs once, in its own transaction, in order. Never edit a released migration:
append a new one.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE nodes (
            name TEXT PRIMARY KEY,
            hostname TEXT NOT NULL DEFAULT '',
            agent_version TEXT NOT NULL DEFAULT '',
            sku TEXT NOT NULL DEFAULT '',
            driver_version TEXT NOT NULL DEFAULT '',
            cuda_driver_version TEXT NOT NULL DEFAULT '',
            nvlink_domain TEXT NOT NULL DEFAULT '',
            rack TEXT NOT NULL DEFAULT '',
            boot_id TEXT NOT NULL DEFAULT '',
            gpus TEXT NOT NULL DEFAULT '[]',
            rails TEXT NOT NULL DEFAULT '[]',
            state TEXT NOT NULL,
            state_reason TEXT NOT NULL DEFAULT '',
            state_since REAL NOT NULL,
            registered_at REAL NOT NULL,
            last_seen REAL NOT NULL,
            last_seq INTEGER NOT NULL DEFAULT 0,
            verdict TEXT NOT NULL DEFAULT 'unknown',
            health_evidence_id INTEGER,
            health_at REAL
        );
        CREATE TABLE reports (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL,
            seq INTEGER NOT NULL,
            sampled_at REAL NOT NULL,
            received_at REAL NOT NULL,
            verdict TEXT NOT NULL,
            action TEXT NOT NULL,
            directive_id TEXT NOT NULL DEFAULT '',
            report BLOB NOT NULL,
            UNIQUE (node, seq)
        );
        CREATE TABLE evidence (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL,
            kind TEXT NOT NULL,
            verdict TEXT NOT NULL,
            detail TEXT NOT NULL,
            taken_at REAL NOT NULL,
            source TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX evidence_by_node ON evidence (node, kind, taken_at);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL,
            seq INTEGER,
            kind TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            at REAL NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            evidence_id INTEGER,
            UNIQUE (node, seq)
        );
        CREATE INDEX events_by_time ON events (at);
        CREATE INDEX events_by_node ON events (node, at);
        CREATE TABLE transitions (
            id INTEGER PRIMARY KEY,
            node TEXT NOT NULL,
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            cause TEXT NOT NULL,
            evidence_id INTEGER,
            actor TEXT NOT NULL,
            at REAL NOT NULL
        );
        CREATE INDEX transitions_by_node ON transitions (node, id);
        CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            target TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE runs (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            record TEXT NOT NULL
        );
        CREATE TABLE run_steps (
            run TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            step INTEGER NOT NULL,
            end_at REAL NOT NULL,
            step_time_s REAL NOT NULL
        );
        CREATE INDEX run_steps_by_run ON run_steps (run, end_at);
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1][0]


class SchemaError(RuntimeError):
    """The database cannot be used by this controller (e.g. its schema is newer)."""


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version stored in the database (0 = empty)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to LATEST_VERSION; return the version reached.

    The connection must be in autocommit mode (isolation_level=None).
    """
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise SchemaError(
            f"database schema version {current} is newer than this controller supports "
            f"({LATEST_VERSION}); upgrade gpufleet or use another --db"
        )
    for version, script in MIGRATIONS:
        if version <= current:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {int(version)}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current = version
    return current
