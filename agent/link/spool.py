"""A bounded on-disk FIFO of AgentMessages waiting for the controller's acknowledgement.

Format: one SQLite file (`spool.db`) in WAL mode. Why SQLite rather than segment files: a full
spool drops records from the middle (old reports, not events) and an Ack drops a prefix; both are
one transaction here, with no compaction to write, and a torn write at kill -9 is rolled back by
SQLite's own WAL frame checksums. Each row also carries the CRC32 and length of its payload, so a
record damaged on disk is detected when read, counted (`corrupt`), deleted and skipped. A file
SQLite cannot open at all is renamed to `spool.db.corrupt`, whatever rows can still be read from
it are salvaged into a fresh file, and the loss is counted too.

Durability (the fsync policy): `synchronous="full"` (default) fsyncs the WAL at every commit, so
a message is on disk when `append` returns: kill -9 or power loss loses nothing appended and
nothing acknowledged comes back. `"normal"` skips that fsync: kill -9 of the agent still loses
nothing (the commit is in the OS page cache), but power loss may lose the last few appends/acks.

Numbering: `append` assigns `next_seq`, persisted in the same transaction, so a restarted agent
continues above everything it ever issued. Acks are cumulative and persisted. `rebase` renumbers
the pending records above a controller's `last_stored_seq` when the agent's own numbering fell
behind it (a lost spool), as the wire contract requires. Rows are stored without their seq; the
bytes `pending` yields carry it (a trailing field 1 varint: protobuf's last-value-wins rule).

Thread-safe: one connection behind a lock. One process per directory (an flock on `spool.lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.link.drop_policy import Entry, Priority, SpoolLimits, plan_drops
from agent.link.spool_file import (
    BATCH,
    COUNTERS,
    DB_FILE,
    INSERT,
    LOCK_FILE,
    SCHEMA,
    SELECT_PENDING,
    classify,
    connect,
    intact,
    quarantine,
    salvage,
    stamp,
)
from protos.gpufleet.v1 import fleet_pb2

log = logging.getLogger(__name__)


class SpoolError(RuntimeError):
    """The spool could not do what was asked (disk full, file unusable, closed)."""


class SpoolLockedError(SpoolError):
    """Another process holds this spool directory."""


class RecordTooLargeError(ValueError):
    """A single message larger than the spool may ever hold."""


@dataclass(frozen=True, slots=True)
class SpoolStats:
    """A snapshot of the spool for metrics."""

    depth: int
    bytes: int
    next_seq: int
    acked_seq: int
    dropped_reports: int
    dropped_events: int
    corrupt: int
    rejected: int

    @property
    def dropped(self) -> int:
        """Records the drop policy removed or refused."""
        return self.dropped_reports + self.dropped_events


class Spool:
    """Bounded, durable FIFO of AgentMessages keyed by seq (see the module docstring)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        limits: SpoolLimits | None = None,
        *,
        synchronous: Literal["full", "normal"] = "full",
        max_record_bytes: int = 4 << 20,
    ) -> None:
        self.directory = Path(directory)
        self.limits = limits or SpoolLimits()
        self.max_record_bytes = min(max_record_bytes, self.limits.max_bytes)
        self._sync = "FULL" if synchronous == "full" else "NORMAL"
        self._lock = threading.RLock()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SpoolLockedError(f"spool {self.directory} is in use by another process") from None
        self._conn: sqlite3.Connection | None = None
        self._index: dict[int, Entry] = {}
        self._bytes = 0
        self._meta: dict[str, int] = {}
        try:
            self._open()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------ opening and recovery

    def _connect(self) -> sqlite3.Connection:
        return connect(self.directory / DB_FILE, self._sync)

    def _open(self) -> None:
        try:
            conn = self._connect()
            if conn.execute("PRAGMA quick_check").fetchone() != ("ok",):
                raise sqlite3.DatabaseError("quick_check failed")
            conn.executescript(SCHEMA)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "readonly" in str(exc):
                raise SpoolError(f"cannot open spool {self.directory}: {exc}") from exc
            conn = self._rebuild(exc)
        except sqlite3.DatabaseError as exc:
            conn = self._rebuild(exc)
        self._conn = conn
        self._load()

    def _rebuild(self, cause: Exception) -> sqlite3.Connection:
        """Move an unusable file aside, salvage what rows it still yields into a fresh one."""
        log.error("spool %s is corrupt (%s): rebuilding it", self.directory, cause)
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        rows, meta = salvage(quarantine(self.directory))
        conn = self._connect()
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        meta["corrupt"] = meta.get("corrupt", 0) + 1
        top = max((r[0] for r in rows), default=0)
        meta["next_seq"] = max(meta.get("next_seq", 1), top + 1)
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
        log.error("spool %s rebuilt with %d salvaged records", self.directory, len(rows))
        return conn

    def _load(self) -> None:
        """Read numbering, counters and the index; rows with impossible columns are dropped."""
        conn = self._db()
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        self._meta = dict.fromkeys(COUNTERS, 0) | {"next_seq": 1, "acked_seq": 0}
        self._meta.update({k: v for k, v in meta.items() if isinstance(v, int) and v >= 0})
        self._index, bad = {}, []
        for seq, prio, size in conn.execute("SELECT seq, priority, size FROM records ORDER BY seq"):
            if prio in (0, 1) and isinstance(size, int) and size >= 0:
                self._index[seq] = Entry(seq, Priority(prio), size)
            else:
                bad.append(seq)
        self._bytes = sum(e.size for e in self._index.values())
        top = max(self._index, default=0)
        self._meta["next_seq"] = max(self._meta["next_seq"], top + 1)
        for seq in bad:
            log.error("spool record %d has impossible columns: dropped", seq)
            self.discard(seq, reason="corrupt")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SpoolError(f"spool {self.directory} is closed")
        return self._conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self._failed(exc)
            raise SpoolError(f"spool {self.directory}: {exc}") from exc

    def _failed(self, exc: sqlite3.Error) -> None:
        """An I/O-level error is raised as SpoolError; a damaged file is rebuilt (salvaged)."""
        if isinstance(exc, sqlite3.OperationalError):
            raise SpoolError(f"spool {self.directory}: {exc}") from exc
        self._conn = self._rebuild(exc)
        self._load()

    def _set_meta(self, conn: sqlite3.Connection, **values: int) -> None:
        conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values.items())

    # ------------------------------------------------------------ the FIFO

    def append(self, message: fleet_pb2.AgentMessage) -> int:
        """Store `message` under the next seq and return it; 0 if the drop policy refused it.

        Raises ValueError for an ephemeral message, RecordTooLargeError for one that can never
        fit, SpoolError when the disk refuses the write (nothing is changed then).
        """
        priority = classify(message)
        copy = fleet_pb2.AgentMessage()
        copy.CopyFrom(message)
        copy.seq = 0
        body = copy.SerializeToString()
        if len(body) > self.max_record_bytes:
            raise RecordTooLargeError(
                f"a {len(body)}-byte message exceeds the spool's {self.max_record_bytes}-byte limit"
            )
        with self._lock:
            seq = self._meta["next_seq"]
            incoming = Entry(seq, priority, len(body))
            plan = plan_drops(list(self._index.values()), incoming, self.limits)
            dropped = [self._index[s] for s in plan.drop] + ([] if plan.accept else [incoming])
            counts = {
                "dropped_reports": self._meta["dropped_reports"]
                + sum(e.priority is Priority.ROUTINE for e in dropped),
                "dropped_events": self._meta["dropped_events"]
                + sum(e.priority is Priority.EVENT for e in dropped),
            }
            if plan.accept:
                counts["next_seq"] = seq + 1
            with self._transaction() as conn:
                conn.executemany("DELETE FROM records WHERE seq = ?", ((s,) for s in plan.drop))
                if plan.accept:
                    conn.execute(INSERT, (seq, int(priority), len(body), zlib.crc32(body), body))
                self._set_meta(conn, **counts)
            self._meta.update(counts)
            for s in plan.drop:
                self._bytes -= self._index.pop(s).size
            if dropped:
                log.warning("spool full: dropped %d record(s)", len(dropped))
            if not plan.accept:
                return 0
            self._index[seq] = incoming
            self._bytes += len(body)
            return seq

    def pending(self, after_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        """Stored records with seq > `after_seq`, in seq order, as (seq, AgentMessage bytes).

        Reads in batches without holding the lock between them, so appends and acks may run
        while a replay is in progress. A record failing its checksum is deleted, counted and
        skipped.
        """
        cursor = after_seq
        while True:
            with self._lock:
                try:
                    rows = self._db().execute(SELECT_PENDING, (cursor, BATCH)).fetchall()
                except sqlite3.Error as exc:
                    self._failed(exc)
                    continue  # rebuilt from what was readable: read on from the cursor
            if not rows:
                return
            for seq, size, crc, body in rows:
                cursor = seq
                if not intact(size, crc, body):
                    log.error("spool record %d fails its checksum: skipped", seq)
                    self.discard(seq, reason="corrupt")
                    continue
                yield seq, stamp(bytes(body), seq)

    def ack(self, seq: int) -> int:
        """Cumulative: forget every record with seq <= `seq`; returns how many went."""
        with self._lock:
            if seq >= self._meta["next_seq"]:
                raise ValueError(
                    f"ack {seq} is above every seq issued (< {self._meta['next_seq']})"
                )
            if seq <= self._meta["acked_seq"]:
                return 0
            with self._transaction() as conn:
                conn.execute("DELETE FROM records WHERE seq <= ?", (seq,))
                self._set_meta(conn, acked_seq=seq)
            self._meta["acked_seq"] = seq
            gone = [s for s in self._index if s <= seq]
            for s in gone:
                self._bytes -= self._index.pop(s).size
            return len(gone)

    def discard(self, seq: int, *, reason: Literal["corrupt", "rejected"]) -> None:
        """Remove one record that can never be delivered, counting it under `reason`."""
        with self._lock:
            count = self._meta[reason] + 1
            with self._transaction() as conn:
                conn.execute("DELETE FROM records WHERE seq = ?", (seq,))
                self._set_meta(conn, **{reason: count})
            self._meta[reason] = count
            entry = self._index.pop(seq, None)
            if entry is not None:
                self._bytes -= entry.size

    def rebase(self, first_seq: int) -> None:
        """Renumber so that pending records and new ones all get seqs >= `first_seq`.

        For a controller whose `last_stored_seq` (= first_seq - 1) is at or above our
        `next_seq`: our old numbering would be taken for replays. Order is kept.
        """
        with self._lock:
            next_seq = self._meta["next_seq"]
            if first_seq <= next_seq:
                raise ValueError(f"rebase to {first_seq} is not above next_seq {next_seq}")
            low = min(self._index, default=next_seq)
            shift = first_seq - low
            values = {"next_seq": next_seq + shift, "acked_seq": first_seq - 1}
            with self._transaction() as conn:
                conn.execute("UPDATE records SET seq = seq + ?", (shift,))
                self._set_meta(conn, **values)
            self._meta.update(values)
            self._index = {
                s + shift: Entry(s + shift, e.priority, e.size) for s, e in self._index.items()
            }

    # ------------------------------------------------------------ state

    @property
    def next_seq(self) -> int:
        """The seq the next append will get."""
        return self._meta["next_seq"]

    @property
    def acked_seq(self) -> int:
        """The highest cumulative ack applied."""
        return self._meta["acked_seq"]

    def oldest_seq(self) -> int:
        """The lowest seq still stored (0 when empty)."""
        with self._lock:
            return next(iter(self._index), 0)

    def __len__(self) -> int:
        return len(self._index)

    def stats(self) -> SpoolStats:
        """Depth, bytes, numbering and loss counters."""
        with self._lock:
            m = self._meta
            return SpoolStats(
                depth=len(self._index),
                bytes=self._bytes,
                next_seq=m["next_seq"],
                acked_seq=m["acked_seq"],
                dropped_reports=m["dropped_reports"],
                dropped_events=m["dropped_events"],
                corrupt=m["corrupt"],
                rejected=m["rejected"],
            )

    def close(self) -> None:
        """Close the file and release the directory; idempotent."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
            self._release()

    def _release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = -1

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
