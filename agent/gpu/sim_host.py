"""The simulated host of a node: memory, load, disks, services and InfiniBand rails."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from types import MappingProxyType

from agent.gpu.sim_faults import FaultKind, SimFault
from agent.gpu.sim_layout import SimNode, stable_digest
from agent.model import HostSample, IbPort

DOWN_RATE_GBPS = 10.0  # sysfs shows the 4X SDR floor rate on a port whose link is down
_COUNTERS = (
    "symbol_error",
    "link_downed",
    "link_error_recovery",
    "port_rcv_errors",
    "port_xmit_discards",
)


def rail_map(node: SimNode) -> Mapping[int, str]:
    """GPU index -> "mlx5_N/1": each GPU's rail by PCIe/NUMA affinity."""
    p = node.profile
    return MappingProxyType(
        {g: f"mlx5_{g * p.ib_rails // p.gpus}/1" for g in range(node.gpu_count)}
    )


class SimHost:
    """Host state of one node. Not thread-safe: the backend serialises calls."""

    def __init__(self, node: SimNode) -> None:
        self.node = node
        p = node.profile
        rng = random.Random(int.from_bytes(stable_digest(node.seed, node.name, "host"), "big"))
        self._disks = MappingProxyType(
            {"/": round(rng.uniform(0.18, 0.45), 3), "/raid": round(rng.uniform(0.05, 0.6), 3)}
        )
        self._services = MappingProxyType(dict.fromkeys(p.services, True))
        self._phase = rng.uniform(0, 2 * math.pi)
        self._base_counters = [
            {name: (rng.randrange(0, 3) if name == "symbol_error" else 0) for name in _COUNTERS}
            for _ in range(p.ib_rails)
        ]
        self.ports_down: set[int] = set()
        self._downs = [0] * p.ib_rails
        self._ports: tuple[IbPort, ...] | None = None
        self.rails = rail_map(node)

    def apply(self, fault: SimFault) -> None:
        """Apply a node-level fault that concerns the host."""
        if fault.kind is FaultKind.IB_PORT_DOWN:
            rail = fault.int_param("rail")
            if rail not in self.ports_down:
                self.ports_down.add(rail)
                self._downs[rail] += 1
                self._ports = None

    def repair(self) -> None:
        """Bring every rail back up (counters keep their history)."""
        self.ports_down.clear()
        self._ports = None

    def ib_ports(self) -> tuple[IbPort, ...]:
        """Every rail's port 1, as sysfs shows it."""
        if self._ports is None:
            p = self.node.profile
            self._ports = tuple(
                IbPort(
                    device=f"mlx5_{r}",
                    port=1,
                    state="DOWN" if r in self.ports_down else "ACTIVE",
                    phys_state="Polling" if r in self.ports_down else "LinkUp",
                    rate_gbps=DOWN_RATE_GBPS if r in self.ports_down else p.ib_rate_gbps,
                    link_layer=p.ib_link_layer,
                    counters=MappingProxyType(
                        {
                            **self._base_counters[r],
                            "link_downed": self._base_counters[r]["link_downed"] + self._downs[r],
                        }
                    ),
                    pci_bus_id=p.nic_pci_bus_ids[r % len(p.nic_pci_bus_ids)],
                    numa_node=p.numa_of(r, p.ib_rails),
                )
                for r in range(p.ib_rails)
            )
        return self._ports

    def sample(self, t: float, load: float) -> HostSample:
        """Host health at elapsed time t under `load`."""
        p = self.node.profile
        wobble = math.sin(t / 23.0 + self._phase)
        return HostSample(
            mem_total_bytes=p.host_mem_bytes,
            mem_available_bytes=int(p.host_mem_bytes * (0.93 - 0.35 * load + 0.01 * wobble)),
            load1=round(p.host_cpus * (0.01 + 0.25 * load) * (1 + 0.1 * wobble), 2),
            cpu_count=p.host_cpus,
            disks=self._disks,
            services=self._services,
            ib_ports=self.ib_ports(),
            rails=self.rails,
        )
