"""`SimFleet`: many simulated nodes laid out in NVLink domains, sharing one clock, start time
and fault inbox; and `build_simulated_backend` for an agent that simulates one node of a fleet.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Collection

from agent.gpu.sim_backend import SimulatedBackend
from agent.gpu.sim_faults import SimFault
from agent.gpu.sim_inbox import FaultInbox
from agent.gpu.sim_layout import SimNode, stable_digest
from agent.gpu.sim_spec import SimSpec, SimSpecError, check_spec
from gpufleet_common.clock import Clock


def fleet_nodes(spec: SimSpec) -> list[SimNode]:
    """Lay the spec out as nodes; a fault without a node goes to the first node."""
    check_spec(spec)
    profile, size = spec.profile, spec.nodes_per_domain
    names = spec.node_names()
    by_node: dict[str, list[SimFault]] = {}
    for fault in spec.faults:
        by_node.setdefault(fault.node or names[0], []).append(fault)
    nodes = []
    for i, name in enumerate(names):
        domain = i // size
        cluster, clique = None, None
        if profile.has_fabric:
            digest = stable_digest(spec.seed, "nvl-domain", domain)
            cluster = str(uuid.UUID(bytes=digest))
            clique = 1 + int.from_bytes(digest[:2], "big") % 0x7FFE
        nodes.append(
            SimNode(
                name=name,
                sku=spec.sku,
                gpus=spec.gpus_per_node,
                seed=spec.seed,
                index=i,
                domain_index=domain,
                tray=i % size if profile.has_fabric else None,
                rack=f"rack-{domain:03d}" if profile.has_fabric else f"rack-{i // 4:03d}",
                cluster_uuid=cluster,
                clique_id=clique,
                faults=tuple(by_node.get(name, ())),
                inbox=spec.inbox,
                load=spec.load,
            )
        )
    return nodes


class SimFleet:
    """N simulated nodes in NVLink domains, sharing one clock, start time and inbox."""

    def __init__(self, spec: SimSpec, clock: Clock) -> None:
        """Lay out the fleet (SimSpecError if the spec is invalid); backends start lazily."""
        self._spec, self._clock = spec, clock
        self._nodes = {n.name: n for n in fleet_nodes(spec)}
        self._names = list(self._nodes)
        self._name_set = frozenset(self._names)
        self._start = clock.monotonic()
        self._backends: dict[str, SimulatedBackend] = {}
        self._lock = threading.Lock()
        self._inbox = FaultInbox(spec.inbox, self._deliver) if spec.inbox else None

    @classmethod
    def from_spec(cls, spec: SimSpec, clock: Clock) -> SimFleet:
        """The fleet a spec describes."""
        return cls(spec, clock)

    @property
    def spec(self) -> SimSpec:
        """The spec this fleet was built from."""
        return self._spec

    def node_names(self) -> list[str]:
        """Every node's name, in fleet order."""
        return list(self._names)

    def node(self, name: str) -> SimNode:
        """A node's static description."""
        return self._nodes[self._check(name)]

    def backend(self, name: str) -> SimulatedBackend:
        """The node's backend (created on first use)."""
        self._check(name)
        backend = self._backends.get(name)
        if backend is None:
            with self._lock:
                backend = self._backends.get(name)
                if backend is None:
                    backend = SimulatedBackend(
                        self._nodes[name],
                        self._clock,
                        start=self._start,
                        fleet_names=self._name_set,
                        shared_inbox=self._inbox,
                    )
                    self._backends[name] = backend
        return backend

    def backends(self) -> list[SimulatedBackend]:
        """Every node's backend, in fleet order."""
        return [self.backend(n) for n in self._names]

    def domains(self) -> dict[str, list[str]]:
        """NVLink domain id -> node names in it."""
        out: dict[str, list[str]] = {}
        for node in self._nodes.values():
            out.setdefault(node.nvlink_domain, []).append(node.name)
        return out

    def inject(self, fault: SimFault) -> None:
        """Inject a fault on its node (the first node when it names none)."""
        self.backend(fault.node or self._names[0]).inject(fault)

    def set_load(self, load: float, names: Collection[str] | None = None) -> None:
        """Set the load of the named nodes (default: all)."""
        for name in self._names if names is None else names:
            self.backend(name).set_load(load)

    def inbox_errors(self) -> list[str]:
        """Problems with inbox lines read so far."""
        return self._inbox.errors() if self._inbox is not None else []

    def close(self) -> None:
        """Close every started backend."""
        for backend in list(self._backends.values()):
            backend.close()

    def _check(self, name: str) -> str:
        if name not in self._nodes:
            raise KeyError(
                f"no node {name!r} in the simulated fleet ({self._names[0]} .. {self._names[-1]})"
            )
        return name

    def _deliver(self, fault: SimFault) -> str | None:
        name = fault.node or self._names[0]
        if name not in self._nodes:
            return f"no node {name!r} in this fleet"
        backend = self.backend(name)
        problems = backend.check_fault(fault)
        if problems:
            return "; ".join(problems)
        backend.enqueue(fault)
        return None


def build_simulated_backend(spec: SimSpec, node_name: str | None, clock: Clock) -> SimulatedBackend:
    """The backend of one node of the spec's fleet (None: the first node). A one-node spec
    takes any name (the agent's hostname); its generated name stays an alias for faults."""
    nodes = fleet_nodes(spec)
    names = {n.name: n for n in nodes}
    if node_name is None:
        node = nodes[0]
    elif node_name in names:
        node = names[node_name]
    elif len(nodes) == 1:
        node = dataclasses.replace(nodes[0], name=node_name, aliases=frozenset({nodes[0].name}))
    else:
        raise SimSpecError(
            [
                f"node {node_name!r} is not in the simulated fleet ({nodes[0].name} .. "
                f"{nodes[-1].name})"
            ]
        )
    return SimulatedBackend(node, clock, fleet_names=frozenset(names) | {node.name})
