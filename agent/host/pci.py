"""PCI addresses and where a device sits in the PCIe tree, read from `<root>/sys`.

A device's sysfs path names every bridge above it, e.g.
`/sys/devices/pci0000:15/0000:15:01.0/0000:16:00.0/0000:17:00.0/0000:18:00.0`: host bridge
`pci0000:15`, then the root port, switch ports, and finally the device. Two devices behind the
same PCIe switch share a prefix of that bridge chain; the longer the prefix, the closer they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.host.sysfs import read_int, resolve_under
from agent.model import ReadStatus, Unavailable

_BDF = re.compile(
    r"^(?:(?P<domain>[0-9a-fA-F]{1,8}):)?(?P<bus>[0-9a-fA-F]{2}):"
    r"(?P<dev>[0-9a-fA-F]{2})\.(?P<fn>[0-7])$"
)
_HOST_BRIDGE = re.compile(r"^pci[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2}$")


def normalize_bdf(text: str) -> str | None:
    """Canonical sysfs spelling `dddd:bb:dd.f` of a PCI address, or None when it is not one.

    Accepts NVML's `00000000:18:00.0`, sysfs's `0000:18:00.0` and a bare `18:00.0`. The
    result is safe to use as a path component (it is validated, never passed through).
    """
    m = _BDF.match(text.strip())
    if m is None:
        return None
    domain = int(m["domain"] or "0", 16)
    if domain > 0xFFFF:
        return None
    return f"{domain:04x}:{m['bus'].lower()}:{m['dev'].lower()}.{m['fn']}"


@dataclass(frozen=True, slots=True)
class PciLocation:
    """Where one PCI function sits: its host bridge, the bridges above it, its NUMA node."""

    bdf: str
    host_bridge: str  # "pci0000:15"
    bridges: tuple[str, ...]  # root port first, the device's own parent bridge last
    numa_node: int | None


def locate(root: Path, bdf: str) -> PciLocation | Unavailable:
    """Resolve `<root>/sys/bus/pci/devices/<bdf>` to its place in the PCIe tree."""
    canonical = normalize_bdf(bdf)
    if canonical is None:
        return Unavailable(ReadStatus.ERROR, f"not a PCI address: {bdf[:40]!r}")
    resolved = resolve_under(root, root / "sys" / "bus" / "pci" / "devices" / canonical)
    if isinstance(resolved, Unavailable):
        return resolved
    parts = resolved.parts
    hb_at = next((i for i, p in enumerate(parts) if _HOST_BRIDGE.match(p)), None)
    if hb_at is None or parts[-1] != canonical:
        return Unavailable(ReadStatus.ERROR, f"{canonical}: unexpected sysfs path {resolved}")
    chain = parts[hb_at + 1 : -1]
    if any(normalize_bdf(p) is None for p in chain):
        return Unavailable(ReadStatus.ERROR, f"{canonical}: unexpected sysfs path {resolved}")
    return PciLocation(
        bdf=canonical,
        host_bridge=parts[hb_at],
        bridges=tuple(chain),
        numa_node=numa_node_of(resolved),
    )


class PciTopology:
    """Memo of `locate` under one root: the PCIe tree does not change between sweeps, and
    resolving sysfs links is the most expensive part of a host read. Failures are retried."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._known: dict[str, PciLocation] = {}

    def locate(self, bdf: str) -> PciLocation | Unavailable:
        """Like `locate(root, bdf)`, remembered once it succeeds."""
        known = self._known.get(bdf)
        if known is not None:
            return known
        found = locate(self.root, bdf)
        if isinstance(found, PciLocation):
            self._known[bdf] = found
        return found


def numa_node_of(device_dir: Path) -> int | None:
    """`numa_node` of a PCI device directory; None when unknown (-1, missing, unreadable)."""
    value = read_int(device_dir / "numa_node")
    if isinstance(value, Unavailable) or value < 0:
        return None
    return value
