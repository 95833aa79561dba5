"""Burn-in message sizes as operators and nccl-tests write them: '1M', '64MiB', '4096' (binary
units), a comma list, or a doubling range 'MIN:MAX' (nccl-tests -b/-e/-f 2). One grammar for the
controller (requests) and the agent's worker (its command line)."""

from __future__ import annotations

import re

MAX_SIZES = 64  # sizes in one burn-in; the agent refuses more
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2,
          "MIB": 1024**2, "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str) -> int:
    """'1M', '64MiB', '1G', '4096' -> bytes; ValueError on anything else."""
    match = _SIZE_RE.match(text)
    if not match or match.group(2).upper() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 1M, 64MiB, 1G)")
    value = int(match.group(1)) * _UNITS[match.group(2).upper()]
    if value <= 0:
        raise ValueError(f"size must be positive: {text!r}")
    return value


def parse_sizes(text: str) -> tuple[int, ...]:
    """A comma list of sizes, or a range 'MIN:MAX' doubling (at most MAX_SIZES of them)."""
    if ":" in text:
        low_text, high_text = text.split(":", 1)
        low, high = parse_size(low_text), parse_size(high_text)
        if low > high:
            raise ValueError(f"size range is reversed: {text!r}")
        sizes: list[int] = []
        size = low
        while size <= high and len(sizes) < MAX_SIZES:
            sizes.append(size)
            size *= 2
        return tuple(sizes)
    listed = tuple(parse_size(part) for part in text.split(",") if part.strip())
    if not listed:
        raise ValueError(f"no sizes in {text!r}")
    return listed
