"""Burn-in metrics: each node's latest judged burn-in, refreshed at scrape time.

`LatestBurnins` keeps the newest judged result per node. The orchestrator feeds it the
evidence records it has just stored (`record_evidence`, on the event loop); at start-up
`load` reads each node's latest stored "burnin" evidence (on the store's reader thread), so a
controller restart keeps what the fleet already knows. Scrapes read a copy under a lock.

- gpufleet_burnin_busbw_bytes_per_second{node,cohort}: bus bandwidth at the largest size
  (the evidence's busbw_gbps, GB = 1e9 bytes);
- gpufleet_burnin_outlier{node,cohort}: 1 when the judge flagged it (below the SKU floor or
  below its cohort's median - k*MAD), else 0;
- gpufleet_burnin_timestamp_seconds{node}: when it was judged and stored.

A burn-in that did not complete (check "burnin_failed") measured no bandwidth: it has a
timestamp but no busbw or outlier series (the gate rejects the node on that evidence).
Evidence without a "cohort" (stored before the orchestrator recorded one, or the agent's own
unjudged result) is not exported.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from prometheus_client import Gauge

from controller.store import FleetStore

T = TypeVar("T")
GB = 1e9
FLAGGED = frozenset({"burnin_below_floor", "burnin_outlier"})
FAILED = "burnin_failed"

#: (node, verdict, evidence detail) as the orchestrator stores them
EvidenceRecord = tuple[str, str, Mapping[str, Any]]
Reader = Callable[[Callable[[FleetStore], T]], Awaitable[T]]


@dataclass(frozen=True)
class BurninSample:
    """A node's judged burn-in as exported."""

    node: str
    cohort: str
    at: float
    busbw_bytes_per_second: float | None  # None: it measured nothing (did not complete)
    outlier: bool


def sample_from(node: str, detail: Mapping[str, Any], at: float) -> BurninSample | None:
    """The exported view of one judged "burnin" evidence detail; None when not exportable."""
    cohort = detail.get("cohort")
    if not detail.get("judged") or not isinstance(cohort, str) or not cohort:
        return None
    check = str(detail.get("check", ""))
    busbw = None if check == FAILED else float(detail.get("busbw_gbps") or 0.0) * GB
    return BurninSample(node, cohort, at, busbw, check in FLAGGED)


class LatestBurnins:
    """The newest judged burn-in per node; written on the event loop, read by scrapes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_node: dict[str, BurninSample] = {}

    def record(self, samples: Iterable[BurninSample]) -> None:
        """Keep each sample unless the node already has a newer one."""
        with self._lock:
            for s in samples:
                old = self._by_node.get(s.node)
                if old is None or s.at >= old.at:
                    self._by_node[s.node] = s

    def record_evidence(self, records: Sequence[EvidenceRecord], at: float) -> None:
        """The orchestrator's judged evidence, just stored at `at`."""
        self.record(s for node, _verdict, detail in records
                    if (s := sample_from(node, detail, at)) is not None)

    def snapshot(self) -> dict[str, BurninSample]:
        """A copy of the latest result per node."""
        with self._lock:
            return dict(self._by_node)

    async def load(self, read: Reader[list[BurninSample]], kind: str = "burnin") -> int:
        """Read every node's latest stored burn-in evidence; return how many were exported."""
        samples = await read(lambda store: latest_stored(store, kind))
        self.record(samples)
        return len(samples)


def latest_stored(store: FleetStore, kind: str) -> list[BurninSample]:
    """The exportable latest `kind` evidence of every node (runs on a store thread)."""
    out = []
    for row in store.nodes():
        evidence = store.latest_evidence(row.name, kind)
        if evidence is not None:
            sample = sample_from(row.name, evidence.detail, evidence.taken_at)
            if sample is not None:
                out.append(sample)
    return out


def _no_burnins() -> Mapping[str, BurninSample]:
    return {}


class BurninSync:
    """Writes the latest burn-ins into the three burn-in families (a ScrapeTime refresh)."""

    def __init__(self, busbw: Gauge, outlier: Gauge, timestamp: Gauge) -> None:
        self.busbw = busbw
        self.outlier = outlier
        self.timestamp = timestamp
        self.latest: Callable[[], Mapping[str, BurninSample]] = _no_burnins

    def __call__(self) -> None:
        latest = self.latest()
        for family in (self.busbw, self.outlier, self.timestamp):
            family.clear()
        for node, s in sorted(latest.items()):
            self.timestamp.labels(node).set(s.at)
            if s.busbw_bytes_per_second is not None:
                self.busbw.labels(node, s.cohort).set(s.busbw_bytes_per_second)
                self.outlier.labels(node, s.cohort).set(1.0 if s.outlier else 0.0)
