"""XID events from the kernel log, and merging them with NVML's.

Some XIDs never reach NVML events (NVIDIA/DCGM #235, XID 62), so the agent also reads
`NVRM: Xid` lines. Parsing is pure (`xid_parse.py`, re-exported here), so is `dedup_xid_events`;
`KernelLogXidScanner` only reads lines (from /dev/kmsg, or a file) and calls them. By default it
reads only what is written after it opened; with `lookback_s` (the one-shot check) it first reads
the log's history and keeps the XIDs of the last `lookback_s` seconds. The NVML event thread lives
in `nvml_xid.py` and is re-exported here.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Mapping, Sequence

from agent.gpu.nvml_xid import NvmlXidWatcher
from agent.gpu.xid_parse import (
    XidHistory,
    is_xid_line,
    normalize_pci_bus_id,
    parse_kernel_xid_lines,
    recent_kernel_xids,
)
from agent.model import XidEvent
from gpufleet_common.clock import Clock

__all__ = [
    "KernelLogXidScanner",
    "NvmlXidWatcher",
    "XidHistory",
    "dedup_xid_events",
    "normalize_pci_bus_id",
    "parse_kernel_xid_lines",
]

KMSG_PATH = "/dev/kmsg"


def _same_fault(a: XidEvent, b: XidEvent, window_s: float) -> bool:
    if a.xid != b.xid or a.source == b.source or abs(a.timestamp - b.timestamp) > window_s:
        return False
    if a.gpu is not None and b.gpu is not None:
        return a.gpu == b.gpu
    if a.pci_bus_id and b.pci_bus_id:
        return normalize_pci_bus_id(a.pci_bus_id) == normalize_pci_bus_id(b.pci_bus_id)
    return a.gpu is None and b.gpu is None


def dedup_xid_events(
    new: Sequence[XidEvent], unmatched: Sequence[XidEvent], window_s: float
) -> tuple[list[XidEvent], list[XidEvent]]:
    """Drop second sightings of one fault reported by two sources (NVML and the kernel log).

    An event is a duplicate when a kept event from another source has the same xid and GPU within
    `window_s`; each kept event absorbs at most one twin (two kernel lines after one NVML event
    are two faults). Repeats from one source are kept. `unmatched` are kept events still waiting
    for their twin; returns (events to report, the new unmatched list).
    """
    pool = list(unmatched)
    kept: list[XidEvent] = []
    for event in new:
        twin = next((i for i, p in enumerate(pool) if _same_fault(event, p, window_s)), None)
        if twin is not None:
            del pool[twin]
            continue
        kept.append(event)
        pool.append(event)
    return kept, pool


class KernelLogXidScanner:
    """Reads `NVRM: Xid` lines from /dev/kmsg (records) or a plain file (lines), incrementally.

    Without `lookback_s` it starts at the end: only lines written after it opened count (the
    daemon: a restart must not re-report XIDs an operator has dealt with). With `lookback_s` (the
    one-shot check) the first open also reads the history, i.e. the whole kmsg ring buffer (this
    boot only) or a file's last `max_history_bytes`, and the first poll adds the XIDs of the last
    `lookback_s` seconds; `history` then tells what was found, or why the log could not be read.
    Kernel timestamps count from boot: `boot_time` fixes it, else it is wall minus monotonic time
    at open (printk's clock, like CLOCK_MONOTONIC, stops during suspend; /proc/stat btime does not).

    Never raises: an unreadable log (no permission, missing) is counted in `errors`, remembered in
    `last_error`, and retried after `retry_s`.
    """

    def __init__(
        self,
        clock: Clock,
        path: str = KMSG_PATH,
        bus_to_index: Mapping[str, int] | None = None,
        *,
        from_start: bool = False,
        lookback_s: float | None = None,
        boot_time: float | None = None,
        retry_s: float = 60.0,
        max_records: int = 10_000,
        max_bytes: int = 1 << 20,
        max_history_bytes: int = 64 << 20,
    ) -> None:
        if lookback_s is not None and not lookback_s >= 0:
            raise ValueError(f"lookback_s must be >= 0 seconds, got {lookback_s}")
        self._clock = clock
        self._path = path
        self._buses: dict[str, int] = dict(bus_to_index or {})
        self._from_start = from_start
        self._lookback_s = lookback_s
        self._given_boot_time = boot_time
        self._retry_s = retry_s
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._max_history_bytes = max_history_bytes
        self._fd: int | None = None
        self._records = False  # /dev/kmsg: one read() is one record
        self._boot_time = boot_time
        self._ino: int | None = None
        self._pos = 0
        self._partial = b""
        self._next_open = float("-inf")
        self._history_lines: list[str] | None = None
        self._history_at = 0.0
        self.history: XidHistory | None = None  # set by a lookback (at the first poll)
        self.errors = 0
        self.overruns = 0  # /dev/kmsg records overwritten before we read them
        self.last_error = ""
        # "the end" is where the log was when we started, not at the first poll
        if not self._open(history=lookback_s is not None) and lookback_s is not None:
            self.history = XidHistory(lookback_s, error=self.last_error)

    @property
    def available(self) -> bool:
        """True while the log is open."""
        return self._fd is not None

    def set_bus_map(self, bus_to_index: Mapping[str, int]) -> None:
        """Update the PCI bus id -> GPU index map (known once NVML is up)."""
        self._buses = dict(bus_to_index)

    def poll(self) -> list[XidEvent]:
        """XIDs in lines written since the last poll (the first poll after a lookback also those
        of the window before it opened); never blocks, never raises."""
        found = self._take_history()
        if self._fd is None and not self._open():
            return found
        lines = self._read_or_fail(self._read_records if self._records else self._read_lines)
        if lines is None:
            return found
        return found + parse_kernel_xid_lines(
            lines, self._buses, default_time=self._clock.time(), boot_time=self._boot_time
        )

    def close(self) -> None:
        """Release the file descriptor (poll reopens it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _fail(self, exc: OSError) -> None:
        self.errors += 1
        self.last_error = f"{self._path}: {exc.strerror or exc}"
        self._next_open = self._clock.monotonic() + self._retry_s

    def _read_or_fail(self, read: Callable[[], list[str]]) -> list[str] | None:
        """`read()`, or None once its error is counted and the log closed."""
        try:
            return read()
        except OSError as exc:
            self._fail(exc)
            self.close()
            return None

    def _take_history(self) -> list[XidEvent]:
        if self._history_lines is None or self._lookback_s is None:
            return []
        self.history = recent_kernel_xids(
            self._history_lines, self._buses, now=self._history_at,
            lookback_s=self._lookback_s, boot_time=self._boot_time,
        )
        self._history_lines = None
        return list(self.history.recent)

    def _open(self, history: bool = False) -> bool:
        if self._clock.monotonic() < self._next_open:
            return False
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            self._fail(exc)
            return False
        st = os.fstat(fd)
        self._fd, self._ino, self._partial = fd, st.st_ino, b""
        self._records = stat.S_ISCHR(st.st_mode)
        if self._records and self._given_boot_time is None:
            self._boot_time = self._clock.time() - time.monotonic()
        # First open: where asked. Reopening a file (rotated) reads the new file from its start;
        # reopening /dev/kmsg after an error starts at the end rather than replay the ring buffer.
        if history:  # a fresh kmsg fd starts at the ring buffer's first record
            lines = self._read_or_fail(
                self._read_history_records if self._records else self._read_history)
            if lines is None:
                return False
            self._history_lines, self._history_at = lines, self._clock.time()
        elif self._from_start:
            self._pos = 0
        else:
            self._pos = os.lseek(fd, 0, os.SEEK_END)
        self._from_start = not self._records
        return True

    def _read_history_records(self) -> list[str]:
        """The XID records of the ring buffer, read to its end."""
        lines: list[str] = []
        # bounded even while the kernel floods the log (a record is at least 16 bytes)
        for _ in range(1 + self._max_history_bytes // (16 * self._max_records)):
            batch = self._read_records()
            lines.extend(line for line in batch if is_xid_line(line))
            if len(batch) < self._max_records:
                break
        return lines

    def _read_history(self) -> list[str]:
        """The XID lines of the file's last `max_history_bytes`; leaves the position at its end."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        pos = start = max(0, size - self._max_history_bytes)
        skip = start > 0  # began mid-line: the text up to the first newline is a fragment
        lines: list[str] = []
        partial = b""
        while pos < size:
            data = os.pread(self._fd, min(self._max_bytes, size - pos), pos)
            if not data:
                break
            pos += len(data)
            chunks = (partial + data).split(b"\n")
            partial = chunks.pop()
            if skip and chunks:
                chunks, skip = chunks[1:], False
            text = (c.decode("utf-8", errors="replace") for c in chunks)
            lines.extend(line for line in text if is_xid_line(line))
        self._pos, self._partial = pos, b"" if skip else partial
        return lines
    def _read_records(self) -> list[str]:
        assert self._fd is not None
        lines: list[str] = []
        for _ in range(self._max_records):
            try:
                data = os.read(self._fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # EPIPE: the ring buffer overwrote records; go on
                self.overruns += 1
                continue
            if not data:
                break
            lines.append(data.decode("utf-8", errors="replace").rstrip("\n"))
        return lines

    def _read_lines(self) -> list[str]:
        assert self._fd is not None
        st = os.stat(self._path)
        if st.st_ino != self._ino or st.st_size < self._pos:  # rotated or truncated
            self.close()
            if not self._open():
                return []
            assert self._fd is not None
        data = os.pread(self._fd, self._max_bytes, self._pos)
        self._pos += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        return [c.decode("utf-8", errors="replace") for c in chunks]
