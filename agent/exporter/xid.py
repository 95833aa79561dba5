"""Lifetime XID bookkeeping for the exporter: counts per (GPU, XID) and the last XID per GPU.

A `NodeSample` carries only the XIDs that arrived since the previous sweep, but
`gpufleet_xid_events_total` must be monotonic over the agent's life and
`DCGM_FI_DEV_XID_ERRORS` shows the last XID a GPU reported. The daemon feeds every sweep's
events once: `xids.observe(sample.xid_events)`. Thread-safe (fed by the sweep loop, read by
the HTTP server's scrape thread).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from agent.model import XidEvent

OTHER = "other"  # XID label for series beyond the cap


@dataclass(frozen=True, slots=True)
class XidSnapshot:
    """An immutable view: `counts[(gpu, xid)]` (labels as strings; gpu "" = unknown GPU) and
    the last event per GPU label."""

    counts: Mapping[tuple[str, str], int]
    last: Mapping[str, XidEvent]


class XidCounter:
    """Counts XID events per (GPU, XID). At most `max_series` distinct pairs are kept; further
    XIDs count under xid="other" for their GPU, so totals stay right and cardinality bounded."""

    def __init__(self, max_series: int = 2048) -> None:
        if max_series < 1:
            raise ValueError("max_series must be at least 1")
        self._max_series = max_series
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._last: dict[str, XidEvent] = {}

    def observe(self, events: Iterable[XidEvent]) -> None:
        """Count each event once (call once per sweep with that sweep's new events)."""
        with self._lock:
            for event in events:
                gpu = "" if event.gpu is None else str(event.gpu)
                key = (gpu, str(event.xid))
                if key not in self._counts and len(self._counts) >= self._max_series:
                    key = (gpu, OTHER)
                self._counts[key] = self._counts.get(key, 0) + 1
                previous = self._last.get(gpu)
                if previous is None or event.timestamp >= previous.timestamp:
                    self._last[gpu] = event

    def snapshot(self) -> XidSnapshot:
        """A consistent copy for one scrape."""
        with self._lock:
            return XidSnapshot(
                counts=MappingProxyType(dict(self._counts)),
                last=MappingProxyType(dict(self._last)),
            )
