"""XID events from the kernel log, and merging them with NVML's.

Some XIDs never reach NVML events (NVIDIA/DCGM #235, XID 62), so the agent also reads
`NVRM: Xid` lines. `parse_kernel_xid_lines` and `dedup_xid_events` are pure;
`KernelLogXidScanner` only reads new lines (from /dev/kmsg, or a file in tests) and calls them.
The NVML event thread lives in `nvml_xid.py` and is re-exported here.
"""

from __future__ import annotations

import os
import re
import stat
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from agent.clock import Clock
from agent.gpu.nvml_xid import NvmlXidWatcher
from agent.model import XidEvent

__all__ = [
    "KernelLogXidScanner",
    "NvmlXidWatcher",
    "dedup_xid_events",
    "normalize_pci_bus_id",
    "parse_kernel_xid_lines",
]

KMSG_PATH = "/dev/kmsg"

_BUS_RE = re.compile(
    r"^(?:PCI:)?(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{1,2}):"
    r"(?P<dev>[0-9a-fA-F]{1,2})(?:\.[0-7])?$"
)
_XID_RE = re.compile(
    r"NVRM: Xid \((?P<bus>(?:PCI:)?[0-9a-fA-F:.]+)\): (?P<xid>\d+)(?:,\s*(?P<rest>.*))?"
)
_KMSG_HEAD_RE = re.compile(r"^\d+,\d+,(?P<usec>\d+),[^;]*;")
_ISO_RE = re.compile(
    r"^(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)\s"
)
_CTIME_RE = re.compile(r"^\[(?P<ctime>\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4})\]")
_UPTIME_RE = re.compile(r"\[\s*(?P<sec>\d+\.\d+)\]")


def normalize_pci_bus_id(bus_id: str) -> str | None:
    """"00000000:3B:00.0", "PCI:0000:3b:00", "3b:00.0" -> "0000:3b:00"; None if unparsable."""
    m = _BUS_RE.match(bus_id.strip())
    if m is None:
        return None
    domain = int(m["domain"] or "0", 16)
    return f"{domain:04x}:{int(m['bus'], 16):02x}:{int(m['dev'], 16):02x}"


def _line_time(line: str, default_time: float, boot_time: float | None) -> float:
    m = _KMSG_HEAD_RE.match(line)
    if m is not None:
        return default_time if boot_time is None else boot_time + int(m["usec"]) / 1e6
    m = _ISO_RE.match(line)
    if m is not None:
        try:
            return datetime.fromisoformat(m["iso"]).timestamp()
        except ValueError:
            return default_time
    m = _CTIME_RE.match(line)
    if m is not None:
        try:
            return time.mktime(time.strptime(m["ctime"], "%a %b %d %H:%M:%S %Y"))
        except (ValueError, OverflowError):
            return default_time
    m = _UPTIME_RE.search(line, 0, line.find("NVRM:"))
    if m is not None and boot_time is not None:
        return boot_time + float(m["sec"])
    return default_time


def parse_kernel_xid_lines(
    lines: Iterable[str],
    bus_to_index: Mapping[str, int],
    *,
    default_time: float = 0.0,
    boot_time: float | None = None,
    source: str = "kmsg",
) -> list[XidEvent]:
    """XID events in kernel log lines (raw, `[ 12.3]`, `dmesg -T`, syslog/journald, /dev/kmsg).

    `bus_to_index` maps PCI bus ids in any common spelling to GPU indices. Timestamps come from
    the line when it carries an absolute one (ISO, `dmesg -T`), from `boot_time` plus the uptime
    stamp (`[ 12.3]`, a kmsg record's microseconds) when given, else `default_time`.
    """
    buses = {
        norm: index
        for bus, index in bus_to_index.items()
        if (norm := normalize_pci_bus_id(bus)) is not None
    }
    events: list[XidEvent] = []
    for line in lines:
        m = _XID_RE.search(line)
        if m is None:
            continue
        bus = normalize_pci_bus_id(m["bus"])
        events.append(
            XidEvent(
                xid=int(m["xid"]),
                timestamp=_line_time(line, default_time, boot_time),
                gpu=buses.get(bus) if bus is not None else None,
                pci_bus_id=bus if bus is not None else m["bus"],
                source=source,
                message=(m["rest"] or "").strip(),
            )
        )
    return events


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
    """Reads new `NVRM: Xid` lines from /dev/kmsg (records) or a plain file (lines), incrementally.

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
        retry_s: float = 60.0,
        max_records: int = 10_000,
        max_bytes: int = 1 << 20,
    ) -> None:
        self._clock = clock
        self._path = path
        self._buses: dict[str, int] = dict(bus_to_index or {})
        self._from_start = from_start
        self._retry_s = retry_s
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._fd: int | None = None
        self._records = False  # /dev/kmsg: one read() is one record
        self._boot_time: float | None = None
        self._ino: int | None = None
        self._pos = 0
        self._partial = b""
        self._next_open = float("-inf")
        self.errors = 0
        self.overruns = 0  # /dev/kmsg records overwritten before we read them
        self.last_error = ""
        self._open()  # "the end" is where the log was when we started, not at the first poll

    @property
    def available(self) -> bool:
        """True while the log is open."""
        return self._fd is not None

    def set_bus_map(self, bus_to_index: Mapping[str, int]) -> None:
        """Update the PCI bus id -> GPU index map (known once NVML is up)."""
        self._buses = dict(bus_to_index)

    def poll(self) -> list[XidEvent]:
        """XIDs in lines written since the last poll; never blocks, never raises."""
        if self._fd is None and not self._open():
            return []
        try:
            lines = self._read_records() if self._records else self._read_lines()
        except OSError as exc:
            self._fail(exc)
            self.close()
            return []
        return parse_kernel_xid_lines(
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

    def _open(self) -> bool:
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
        if self._records:  # kernel timestamps count from boot (CLOCK_MONOTONIC)
            self._boot_time = self._clock.time() - time.monotonic()
        # First open: where asked. Reopening a file (rotated) reads the new file from its start;
        # reopening /dev/kmsg after an error starts at the end rather than replay the ring buffer.
        if self._from_start:
            self._pos = 0
        else:
            self._pos = os.lseek(fd, 0, os.SEEK_END)
        self._from_start = not self._records
        return True

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
