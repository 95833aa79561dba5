"""The spool's on-disk format and its recovery (used only by `agent.link.spool`).

One SQLite file in WAL mode. `records` rows are (seq, priority, size, crc32, body): the body is a
serialized AgentMessage without its seq, which `stamp` appends on the way out. `meta` holds the
numbering (`next_seq`, `acked_seq`) and the loss counters. `salvage` reads what it can from a
damaged file, stepping over damaged pages, and keeps only rows whose checksum still holds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import zlib
from pathlib import Path

from agent.link.drop_policy import Priority
from protos.gpufleet.v1 import fleet_pb2

DB_FILE = "spool.db"
LOCK_FILE = "spool.lock"
CORRUPT_SUFFIX = ".corrupt"
BATCH = 256
COUNTERS = ("dropped_reports", "dropped_events", "corrupt", "rejected")
SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, priority INTEGER NOT NULL, size INTEGER NOT NULL,
    crc INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_AFTER = "FROM records WHERE seq > ? ORDER BY seq LIMIT ?"
SELECT_ALL = f"SELECT seq, priority, size, crc, CAST(body AS BLOB) {_AFTER}"
SELECT_PENDING = f"SELECT seq, size, crc, CAST(body AS BLOB) {_AFTER}"
INSERT = "INSERT INTO records VALUES (?, ?, ?, ?, ?)"
_DURABLE_EVENTS = ("xid", "rank_exit")

Row = tuple[int, int, int, int, bytes]


def classify(message: fleet_pb2.AgentMessage) -> Priority:
    """The spool priority of a message; ValueError for what must never be spooled."""
    body = message.WhichOneof("body")
    if body == "report":
        return Priority.ROUTINE
    kind = message.event.WhichOneof("kind") if body == "event" else None
    if body == "result" or kind in _DURABLE_EVENTS:
        return Priority.EVENT
    raise ValueError(f"an AgentMessage with body {body!r} is ephemeral and is never spooled")


def stamp(body: bytes, seq: int) -> bytes:
    """`body` with field 1 (seq) appended as a varint; protobuf parsers keep the last value."""
    out = bytearray(body)
    out.append(0x08)
    while True:
        low = seq & 0x7F
        seq >>= 7
        if seq:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def intact(size: object, crc: object, body: bytes) -> bool:
    """Whether a stored body still has the length and CRC32 it was written with."""
    return len(body) == size and zlib.crc32(body) == crc


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open (or create) the file in WAL mode with the given `synchronous` level."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def quarantine(directory: Path) -> Path:
    """Move the database and its WAL files aside (replacing an older quarantine)."""
    db = directory / DB_FILE
    aside = directory / (DB_FILE + CORRUPT_SUFFIX)
    for suffix in ("", "-wal", "-shm"):
        stale = Path(str(aside) + suffix)
        if stale.exists():
            stale.unlink()
        src = Path(str(db) + suffix)
        if src.exists():
            os.replace(src, stale)
    return aside


def salvage(path: Path) -> tuple[list[Row], dict[str, int]]:
    """Rows (with a valid checksum) and meta values still readable from a damaged file.

    Reads in seq order; where a damaged page stops the scan, it probes the seqs after it (one
    by one, then doubling) so that only the records on the damaged pages are lost.
    """
    rows: list[Row] = []
    meta: dict[str, int] = {}
    if not path.exists():
        return rows, meta
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return rows, meta
    try:
        with contextlib.suppress(sqlite3.Error):
            for key, value in conn.execute("SELECT key, value FROM meta"):
                if isinstance(value, int):
                    meta[str(key)] = value
        cursor, limit, skip = 0, BATCH, 0
        while skip < 1 << 62:
            try:
                batch = conn.execute(SELECT_ALL, (cursor + skip, limit)).fetchall()
            except sqlite3.Error:
                if limit > 1:  # find the bad row one at a time
                    limit = 1
                else:  # step over it, one seq at a time at first, then doubling
                    skip = skip + 1 if skip < 1024 else skip * 2
                continue
            if not batch:
                break
            limit, skip = BATCH, 0
            for seq, prio, size, crc, body in batch:
                cursor = seq
                if prio in (0, 1) and intact(size, crc, body):
                    rows.append((seq, prio, size, crc, bytes(body)))
    finally:
        conn.close()
    return rows, meta
