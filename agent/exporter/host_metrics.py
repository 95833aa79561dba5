"""gpufleet's host families: memory, load, disks, required services, IB/RoCE ports, rails."""

from __future__ import annotations

from prometheus_client.core import Metric

from agent.exporter.families import Family, Kind, Spec, label
from agent.host.infiniband import IB_ERROR_COUNTERS
from agent.model import HostSample, IbPort

MEM_TOTAL = Spec("gpufleet_host_memory_total_bytes", Kind.GAUGE, "Host RAM.")
MEM_AVAILABLE = Spec("gpufleet_host_memory_available_bytes", Kind.GAUGE, "Host RAM available.")
LOAD1 = Spec("gpufleet_host_load1", Kind.GAUGE, "One-minute load average.")
CPUS = Spec("gpufleet_host_cpus", Kind.GAUGE, "Logical CPUs.")
DISK_USED = Spec("gpufleet_host_disk_used_ratio", Kind.GAUGE,
                 "Used fraction (0..1) of each watched mount.", ("mount",))  # fmt: skip
SERVICE_UP = Spec("gpufleet_host_service_up", Kind.GAUGE,
                  "1 when a required service's process runs.", ("service",))  # fmt: skip
PORT = ("device", "port")
IB_UP = Spec("gpufleet_ib_port_up", Kind.GAUGE, "1 when the port is ACTIVE and LinkUp.", PORT)
IB_RATE = Spec("gpufleet_ib_port_rate_gbps", Kind.GAUGE, "Port rate in Gb/s.", PORT)
IB_ERRORS = Spec(
    "gpufleet_ib_port_errors_total", Kind.COUNTER,
    "Port error counters from sysfs (symbol_error, link_downed, port_rcv_errors, ...).",
    (*PORT, "counter"),
)  # fmt: skip
IB_INFO = Spec(
    "gpufleet_ib_port_info", Kind.GAUGE, "Port identity: link layer, PCI address, NUMA node.",
    (*PORT, "link_layer", "pci_bus_id", "numa_node"),
)  # fmt: skip
RAIL_INFO = Spec("gpufleet_gpu_rail_info", Kind.GAUGE,
                 "The NIC port on each GPU's PCIe switch (value 1).", ("gpu", "rail"))  # fmt: skip
HOST_SPECS: tuple[Spec, ...] = (
    MEM_TOTAL, MEM_AVAILABLE, LOAD1, CPUS, DISK_USED, SERVICE_UP, IB_UP, IB_RATE, IB_ERRORS,
    IB_INFO, RAIL_INFO,
)  # fmt: skip


def port_up(port: IbPort) -> bool | None:
    """ACTIVE and LinkUp; None when either state could not be read."""
    if not port.state or not port.phys_state:
        return None
    return port.state.upper() == "ACTIVE" and port.phys_state.lower() == "linkup"


def host_families(host: HostSample) -> list[Metric]:
    """All host families for one sweep."""
    fam = {spec.name: Family(spec) for spec in HOST_SPECS}
    fam[MEM_TOTAL.name].add([], host.mem_total_bytes)
    fam[MEM_AVAILABLE.name].add([], host.mem_available_bytes)
    fam[LOAD1.name].add([], host.load1)
    fam[CPUS.name].add([], host.cpu_count)
    for mount, used in sorted(host.disks.items()):
        fam[DISK_USED.name].add([mount], used)
    for service, running in sorted(host.services.items()):
        fam[SERVICE_UP.name].add([service], running)
    for port in host.ib_ports:
        key = [port.device, str(port.port)]
        fam[IB_UP.name].add(key, port_up(port))
        fam[IB_RATE.name].add(key, port.rate_gbps)
        for counter, value in sorted(port.counters.items()):
            if counter in IB_ERROR_COUNTERS:
                fam[IB_ERRORS.name].add([*key, counter], value)
        fam[IB_INFO.name].add(
            [*key, port.link_layer, label(port.pci_bus_id), label(port.numa_node)], 1
        )
    for gpu, rail in sorted(host.rails.items()):
        fam[RAIL_INFO.name].add([str(gpu), rail], 1)
    return [f.metric for f in fam.values()]
