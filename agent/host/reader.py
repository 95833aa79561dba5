"""One read of the host: psutil facts, IB/RoCE ports and the GPU<->NIC rail map.

Never raises. Every failed read is an entry of `HostSample.unavailable` keyed by the HostSample
field it belongs to (`mem_total_bytes`, `mem_available_bytes`, `load1`, `cpu_count`, `disks`,
`services`, `ib_ports`, `rails`), ERROR when anything in it failed and NOT_SUPPORTED when it is
merely absent (no `/sys/class/infiniband` on a laptop); the text names each failed item, e.g.
`/scratch: /scratch is not a mount point` or `mlx5_3/1:rate: not a rate: 'fast'`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

from agent.host.infiniband import DeviceLocations, read_ib_ports
from agent.host.pci import PciTopology
from agent.host.rails import rail_map
from agent.host.sysfs import worst
from agent.host.system import HostProbe, PsutilProbe, process_names_for
from agent.model import GpuSample, HostSample, ReadStatus, Unavailable

# Nothing by default: which services a node needs is policy ([host] required_services plus the
# SKU's), and a service reported as not running is CRITICAL. HGX H100 nodes typically need
# ("nvidia-persistenced", "nvidia-fabricmanager").
DEFAULT_REQUIRED_SERVICES: tuple[str, ...] = ()
DEFAULT_DISK_MOUNTS: tuple[str, ...] = ("/",)

T = TypeVar("T")
_FIELDS = (
    "mem_total_bytes",
    "mem_available_bytes",
    "load1",
    "cpu_count",
    "disks",
    "services",
    "ib_ports",
    "rails",
)


class HostReader:
    """Reads the host each sweep. Keep one: it remembers service PIDs (in the probe) and the
    PCIe placement of GPUs and NICs, which do not change between sweeps."""

    def __init__(
        self,
        root: Path = Path("/"),
        required_services: Sequence[str] = DEFAULT_REQUIRED_SERVICES,
        disk_mounts: Sequence[str] = DEFAULT_DISK_MOUNTS,
        probe: HostProbe | None = None,
    ) -> None:
        self.root = root
        self.required_services = tuple(required_services)
        self.disk_mounts = tuple(disk_mounts)
        self.probe: HostProbe = probe if probe is not None else PsutilProbe()
        self._topology = PciTopology(root)
        self._ib_locations: DeviceLocations = {}

    def __call__(self, gpus: Sequence[GpuSample]) -> HostSample:
        """Read the host for this sweep's GPUs (the `agent.collect.HostReader` shape)."""
        return self.read({g.index: g.pci_bus_id for g in gpus if g.pci_bus_id})

    def read(self, gpu_pci_bus_ids: Mapping[int, str] | None = None) -> HostSample:
        """Read everything; with GPU PCI addresses (index -> bus id) also map rails."""
        problems: dict[str, Unavailable] = {}
        probe = self.probe
        memory = _attempt(probe.memory, "memory", problems)
        disks: dict[str, float] = {}
        for mount in self.disk_mounts:
            used = _attempt(partial(probe.disk_used_fraction, mount), f"disks:{mount}", problems)
            if used is not None:
                disks[mount] = used
        ports, ib_problems = read_ib_ports(self.root, self._ib_locations)
        problems.update(ib_problems)
        rails = (
            rail_map(gpu_pci_bus_ids, ports, self.root, problems, self._topology)
            if gpu_pci_bus_ids and ports
            else {}
        )
        load1 = _attempt(probe.load1, "load1", problems)
        cpu_count = _attempt(probe.cpu_count, "cpu_count", problems)
        services = self._services(problems)
        if "memory" in problems:
            problems["mem_total_bytes"] = problems["mem_available_bytes"] = problems["memory"]
        unavailable = {
            field: entry for field in _FIELDS if (entry := worst(field, problems)) is not None
        }
        return HostSample(
            mem_total_bytes=memory[0] if memory else None,
            mem_available_bytes=memory[1] if memory else None,
            load1=load1,
            cpu_count=cpu_count,
            disks=disks,
            services=services,
            ib_ports=ports,
            rails=rails,
            unavailable=unavailable,
        )

    def _services(self, problems: dict[str, Unavailable]) -> dict[str, bool]:
        if not self.required_services:
            return {}
        wanted = {s: process_names_for(s) for s in self.required_services}
        every_name = [name for names in wanted.values() for name in names]
        running = _attempt(lambda: self.probe.running(every_name), "services", problems)
        if running is None:
            return {}
        return {s: any(n in running for n in names) for s, names in wanted.items()}


def read_host(
    root: Path = Path("/"),
    required_services: Sequence[str] = DEFAULT_REQUIRED_SERVICES,
    disk_mounts: Sequence[str] = DEFAULT_DISK_MOUNTS,
    gpu_pci_bus_ids: Mapping[int, str] | None = None,
    probe: HostProbe | None = None,
) -> HostSample:
    """One-shot host read (the daemon keeps a `HostReader` instead, for its PID cache)."""
    return HostReader(root, required_services, disk_mounts, probe).read(gpu_pci_bus_ids)


def _attempt(read: Callable[[], T], key: str, problems: dict[str, Unavailable]) -> T | None:
    """Call one probe read; any exception becomes `problems[key]` (the seam never raises)."""
    try:
        return read()
    except FileNotFoundError as exc:
        problems[key] = Unavailable(ReadStatus.NOT_SUPPORTED, str(exc))
    except Exception as exc:  # a failed read is data (UNKNOWN), never a crash
        problems[key] = Unavailable(ReadStatus.ERROR, f"{type(exc).__name__}: {exc}")
    return None
