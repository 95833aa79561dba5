"""Map NVML GPU names to the policy's SKU keys."""

from __future__ import annotations

import functools
import re

# (pattern on the NVML name, SKU key), first match wins. H100 SXM5 boards report HBM3
# ("NVIDIA H100 80GB HBM3"); the PCIe and NVL boards ("NVIDIA H100 PCIe", "NVIDIA H100 NVL")
# have no NVSwitch and fall through to "default".
_BUILTIN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bG?B300\b", re.IGNORECASE), "gb300"),
    (re.compile(r"\bH100\b.*\b(HBM3|SXM\d?)\b", re.IGNORECASE), "h100_sxm"),
)


@functools.lru_cache(maxsize=64)
def sku_of(gpu_name: str) -> str:
    """SKU key of an NVML GPU name: "h100_sxm", "gb300", or "default" when unknown."""
    for pattern, sku in _BUILTIN:
        if pattern.search(gpu_name):
            return sku
    return "default"
