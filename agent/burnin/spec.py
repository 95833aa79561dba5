"""Burn-in parameters and results, with the nccl-tests bandwidth formulas.

All-reduce bus bandwidth = algbw × 2(n−1)/n (nccl-tests doc/PERFORMANCE.md): algbw = S/t with
GB = 1e9 bytes; the factor turns it into the per-link rate that compares across group sizes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

DEFAULT_SIZES = (1 << 20, 4 << 20, 16 << 20, 64 << 20)


def bus_factor(world_size: int) -> float:
    """All-reduce bus-bandwidth factor 2(n−1)/n."""
    return 2.0 * (world_size - 1) / world_size if world_size > 1 else 1.0


def bandwidths(size_bytes: int, seconds: float, world_size: int) -> tuple[float, float]:
    """(algbw, busbw) in GB/s for one all-reduce of `size_bytes` taking `seconds`."""
    if seconds <= 0:
        return 0.0, 0.0
    algbw = size_bytes / seconds / 1e9
    return algbw, algbw * bus_factor(world_size)


@dataclass(frozen=True)
class SizeResult:
    """One row of the sweep, like a line of nccl-tests output."""

    bytes: int
    time_us: float
    algbw_gbps: float
    busbw_gbps: float
    wrong: int


@dataclass(frozen=True)
class BurnInResult:
    """What one burn-in produced (or why it did not)."""

    backend: str
    world_size: int
    sizes: tuple[SizeResult, ...] = ()
    timed_out: bool = False
    error: str = ""
    duration_s: float = 0.0
    nccl_version: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Completed, no data errors."""
        return not self.timed_out and not self.error and all(s.wrong == 0 for s in self.sizes)

    @property
    def peak_busbw_gbps(self) -> float:
        """Bus bandwidth at the largest size (where the link, not latency, is the limit)."""
        return max(self.sizes, key=lambda s: s.bytes).busbw_gbps if self.sizes else 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> BurnInResult:
        raw = json.loads(text)
        sizes = tuple(SizeResult(**row) for row in raw.pop("sizes", []))
        return BurnInResult(sizes=sizes, **raw)
