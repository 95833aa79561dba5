"""Host health through psutil and sysfs: memory, load, disks, services, IB ports, NIC rails."""

from agent.host.infiniband import IB_ERROR_COUNTERS, parse_rate, parse_state, read_ib_ports
from agent.host.pci import PciLocation, locate, normalize_bdf
from agent.host.rails import affinity, assign_rails, rail_map
from agent.host.reader import (
    DEFAULT_DISK_MOUNTS,
    DEFAULT_REQUIRED_SERVICES,
    HostReader,
    read_host,
)
from agent.host.system import HostProbe, PsutilProbe, process_names_for

__all__ = [
    "DEFAULT_DISK_MOUNTS",
    "DEFAULT_REQUIRED_SERVICES",
    "IB_ERROR_COUNTERS",
    "HostProbe",
    "HostReader",
    "PciLocation",
    "PsutilProbe",
    "affinity",
    "assign_rails",
    "locate",
    "normalize_bdf",
    "parse_rate",
    "parse_state",
    "process_names_for",
    "rail_map",
    "read_host",
    "read_ib_ports",
]
