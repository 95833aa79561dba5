"""Burn-in parameters and results, with the nccl-tests bandwidth formulas.

All-reduce bus bandwidth = algbw × 2(n−1)/n (nccl-tests doc/PERFORMANCE.md): algbw = S/t with
GB = 1e9 bytes; the factor turns it into the per-link rate that compares across group sizes.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2,
          "MIB": 1024**2, "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")
DEFAULT_SIZES = (1 << 20, 4 << 20, 16 << 20, 64 << 20)


def parse_size(text: str) -> int:
    """'1M', '64MiB', '1G', '4096' → bytes (binary units). Raises ValueError on nonsense."""
    match = _SIZE_RE.match(text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 1M, 64MiB, 1G)")
    value = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return value


def parse_sizes(text: str) -> tuple[int, ...]:
    """A comma list of sizes, or a range 'MIN:MAX' doubling (nccl-tests -b/-e/-f 2)."""
    if ":" in text:
        low_text, high_text = text.split(":", 1)
        low, high = parse_size(low_text), parse_size(high_text)
        if low > high:
            raise ValueError(f"size range is reversed: {text!r}")
        sizes: list[int] = []
        size = low
        while size <= high and len(sizes) < 64:
            sizes.append(size)
            size *= 2
        return tuple(sizes)
    return tuple(parse_size(part) for part in text.split(",") if part.strip())


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
