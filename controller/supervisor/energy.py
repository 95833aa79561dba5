"""A run's energy, binned in time: what the NVML total-energy counters of its GPUs grew by,
spread evenly over each pair of consecutive readings and added into fixed-width time buckets.

Memory and cost do not grow with the number of GPUs (8,192 for the 671B run): each GPU keeps
only its last reading, the run keeps one number per bucket, and when the buckets exceed their
bound the width doubles (the oldest resolution is merged, never dropped). The ledger asks
`between(a, b)` for the energy inside a productive step. A counter that goes backwards (driver
reload) or a gap longer than `max_gap_s` starts that GPU's series again without attributing the
unknown stretch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_BINS = 100_000
MAX_GAP_S = 6 * 3600.0


@dataclass
class EnergyAccount:
    bucket_s: float = 1.0
    max_bins: int = MAX_BINS
    max_gap_s: float = MAX_GAP_S
    bins: dict[int, float] = field(default_factory=dict)  # bucket index -> joules
    last: dict[str, tuple[float, float]] = field(default_factory=dict)  # source -> (at, mJ)
    total_j: float = 0.0

    def add(self, source: str, at: float, total_mj: float) -> None:
        """One reading of one GPU's counter (mJ since driver load), taken at `at`."""
        prev = self.last.get(source)
        if prev is not None and at <= prev[0]:
            return  # a replay or an out-of-order reading: already accounted
        self.last[source] = (at, total_mj)
        if prev is None or total_mj < prev[1] or at - prev[0] > self.max_gap_s:
            return
        joules = (total_mj - prev[1]) / 1000.0
        if joules > 0:
            self._deposit(prev[0], at, joules)

    def between(self, a: float, b: float) -> float:
        """Joules inside [a, b] (a bucket counts by the share of it the interval covers)."""
        if b <= a or not self.bins:
            return 0.0
        w = self.bucket_s
        total = 0.0
        for i in range(math.floor(a / w), math.floor(b / w) + 1):
            joules = self.bins.get(i)
            if joules:
                overlap = min(b, (i + 1) * w) - max(a, i * w)
                total += joules * max(0.0, overlap) / w
        return total

    def coarsened(self, max_bins: int) -> EnergyAccount:
        """A copy with at most `max_bins` buckets (for a compact snapshot)."""
        copy = EnergyAccount(self.bucket_s, self.max_bins, self.max_gap_s, dict(self.bins),
                             dict(self.last), self.total_j)
        while len(copy.bins) > max_bins:
            copy._coarsen()
        return copy

    def to_json(self) -> dict[str, Any]:
        return {"bucket_s": self.bucket_s, "total_j": self.total_j,
                "bins": [[i, j] for i, j in sorted(self.bins.items())],
                "last": {src: [t, e] for src, (t, e) in self.last.items()}}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> EnergyAccount:
        bucket_s = float(doc["bucket_s"])
        if not bucket_s > 0 or math.isinf(bucket_s):
            raise ValueError(f"energy bucket width must be > 0, got {bucket_s}")
        return cls(bucket_s=bucket_s, total_j=float(doc["total_j"]),
                   bins={int(i): float(j) for i, j in doc["bins"]},
                   last={str(s): (float(t), float(e)) for s, (t, e) in doc["last"].items()})

    def _deposit(self, a: float, b: float, joules: float) -> None:
        self.total_j += joules
        w, rate = self.bucket_s, joules / (b - a)
        for i in range(math.floor(a / w), math.floor(b / w) + 1):
            overlap = min(b, (i + 1) * w) - max(a, i * w)
            if overlap > 0:
                self.bins[i] = self.bins.get(i, 0.0) + rate * overlap
        while len(self.bins) > self.max_bins:
            self._coarsen()

    def _coarsen(self) -> None:
        merged: dict[int, float] = {}
        for i, joules in self.bins.items():
            merged[i // 2] = merged.get(i // 2, 0.0) + joules
        self.bins, self.bucket_s = merged, self.bucket_s * 2
