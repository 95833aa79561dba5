"""Pure parsing of `NVRM: Xid` kernel-log lines, and the lookback filter over a log's history.

Nothing here does IO or reads a clock: "now" and the boot time are arguments. The scanner that
reads /dev/kmsg or a file is `KernelLogXidScanner` in `xid.py`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from agent.model import XidEvent

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
_SYSLOG_RE = re.compile(r"^(?P<stamp>\w{3} [ \d]\d \d\d:\d\d:\d\d)\s")  # no year (RFC 3164)


def normalize_pci_bus_id(bus_id: str) -> str | None:
    """"00000000:3B:00.0", "PCI:0000:3b:00", "3b:00.0" -> "0000:3b:00"; None if unparsable."""
    m = _BUS_RE.match(bus_id.strip())
    if m is None:
        return None
    domain = int(m["domain"] or "0", 16)
    return f"{domain:04x}:{int(m['bus'], 16):02x}:{int(m['dev'], 16):02x}"


def _syslog_time(stamp: str, now: float) -> float | None:
    """A year-less syslog stamp ("Mar  5 12:34:56", local time) in the year that puts it at most
    a day after `now` (so a December line read in January lands in the previous year)."""
    year = time.localtime(now).tm_year
    for candidate in (year, year - 1):
        try:
            when = time.mktime(time.strptime(f"{candidate} {stamp}", "%Y %b %d %H:%M:%S"))
        except (ValueError, OverflowError):
            return None
        if when <= now + 86_400:
            return when
    return None


def line_timestamp(
    line: str, boot_time: float | None = None, now: float | None = None
) -> float | None:
    """Wall-clock time a kernel-log line carries, or None when it carries none we can trust.

    Absolute stamps (ISO, `dmesg -T`) are taken as they are; uptime stamps (a kmsg record's
    microseconds, `[ 12.3]`) need `boot_time`; a year-less syslog stamp needs `now` for its year.
    """
    m = _KMSG_HEAD_RE.match(line)
    if m is not None:
        return None if boot_time is None else boot_time + int(m["usec"]) / 1e6
    m = _ISO_RE.match(line)
    if m is not None:
        try:
            return datetime.fromisoformat(m["iso"]).timestamp()
        except ValueError:
            return None
    m = _CTIME_RE.match(line)
    if m is not None:
        try:
            return time.mktime(time.strptime(m["ctime"], "%a %b %d %H:%M:%S %Y"))
        except (ValueError, OverflowError):
            return None
    m = _UPTIME_RE.search(line, 0, line.find("NVRM:"))
    if m is not None and boot_time is not None:
        return boot_time + float(m["sec"])
    m = _SYSLOG_RE.match(line)
    if m is not None and now is not None:
        return _syslog_time(m["stamp"], now)
    return None


def is_xid_line(line: str) -> bool:
    """True when the line is an `NVRM: Xid` report the parser understands."""
    return _XID_RE.search(line) is not None


def parse_kernel_xid_lines(
    lines: Iterable[str],
    bus_to_index: Mapping[str, int],
    *,
    default_time: float = 0.0,
    boot_time: float | None = None,
    now: float | None = None,
    source: str = "kmsg",
) -> list[XidEvent]:
    """XID events in kernel log lines (raw, `[ 12.3]`, `dmesg -T`, syslog/journald, /dev/kmsg).

    `bus_to_index` maps PCI bus ids in any common spelling to GPU indices. Timestamps come from
    the line when it carries an absolute one (ISO, `dmesg -T`), from `boot_time` plus the uptime
    stamp (`[ 12.3]`, a kmsg record's microseconds) when given, from a year-less syslog stamp
    when `now` is given to pick its year, else `default_time`.
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
        stamp = line_timestamp(line, boot_time, now)
        events.append(
            XidEvent(
                xid=int(m["xid"]),
                timestamp=default_time if stamp is None else stamp,
                gpu=buses.get(bus) if bus is not None else None,
                pci_bus_id=bus if bus is not None else m["bus"],
                source=source,
                message=(m["rest"] or "").strip(),
            )
        )
    return events


@dataclass(frozen=True, slots=True)
class XidHistory:
    """What a look back over the kernel log's history found (or why it could not look)."""

    lookback_s: float
    error: str = ""  # why the log could not be read; "" when it was
    recent: tuple[XidEvent, ...] = ()  # XIDs within the window, oldest first
    older: int = 0  # XID lines before the window (ignored)
    undated: int = 0  # XID lines without a usable timestamp (age unknown, not judged)


def recent_kernel_xids(
    lines: Iterable[str],
    bus_to_index: Mapping[str, int],
    *,
    now: float,
    lookback_s: float,
    boot_time: float | None,
) -> XidHistory:
    """The XIDs in `lines` stamped no earlier than `now - lookback_s`.

    A line whose time cannot be known is counted in `undated` rather than guessed: calling an XID
    of unknown age recent could be a false alarm, calling it old could hide one.
    """
    if lookback_s < 0:
        raise ValueError(f"lookback_s must be >= 0, got {lookback_s}")
    xid_lines = [line for line in lines if is_xid_line(line)]
    dated = [line for line in xid_lines if line_timestamp(line, boot_time, now) is not None]
    events = parse_kernel_xid_lines(dated, bus_to_index, boot_time=boot_time, now=now)
    horizon = now - lookback_s
    recent = sorted((e for e in events if e.timestamp >= horizon), key=lambda e: e.timestamp)
    return XidHistory(
        lookback_s=lookback_s,
        recent=tuple(recent),
        older=len(events) - len(recent),
        undated=len(xid_lines) - len(dated),
    )
