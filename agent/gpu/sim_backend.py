"""`SimulatedBackend`: one simulated node behind the `GpuBackend` protocol.

It fills the same `GpuSample` fields, with the same `Unavailable` semantics, that the NVML
backend reports on the node's SKU (see `sim_profiles`). Readings are seeded and a pure function
of the injected clock, the node's load (`set_load`) and the faults that have fired. Faults come
from the node's script (fired when the clock passes their time), from `inject()`, or from an
inbox file (checked on every read); XIDs are delivered once by `drain_xid_events()`.
"""

from __future__ import annotations

import dataclasses
import heapq
import threading
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from agent.gpu.backend import GpuDevice
from agent.gpu.sim_faults import RULES, FaultKind, SimFault, Target, fault_problems
from agent.gpu.sim_gpu import SimGpu
from agent.gpu.sim_host import SimHost
from agent.gpu.sim_inbox import FaultInbox
from agent.gpu.sim_layout import SimNode
from agent.gpu.sim_profiles import CUDA_DRIVER_VERSION, DRIVER_VERSION, NVML_VERSION
from agent.model import GpuSample, HostSample, SystemInfo, XidEvent
from gpufleet_common.clock import Clock

MAX_QUEUED_XIDS = 10_000
MAX_FIRED = 10_000
XID_TEXT: Mapping[int, str] = {
    13: "Graphics Engine Exception",
    31: "MMU Fault",
    43: "Reset Channel Verif Error",
    45: "Preemptive Cleanup, due to previous errors",
    48: "DBE (Double Bit Error) ECC Error",
    63: "ECC page retirement or row remapping recording event",
    64: "ECC page retirement or row remapper recording failure",
    74: "NVLink Error",
    79: "GPU has fallen off the bus",
    94: "Contained ECC error",
    95: "Uncontained ECC error",
    119: "GSP RPC Timeout",
    154: "GPU recovery action changed",
}


@dataclass(frozen=True, slots=True)
class SimTopology:
    """Where a simulated node sits: SKU, NVLink domain, rack/tray and GPU-to-rail map."""

    node: str
    sku: str
    gpu_name: str
    gpus: int
    nvlink_domain: str  # fabric "clusterUuid/cliqueId", or the node name (H100)
    cluster_uuid: str | None
    clique_id: int | None
    domain_index: int
    rack: str
    tray: int | None
    rails: Mapping[int, str]


class SimDevice:
    """One GPU of a `SimulatedBackend` (a `GpuDevice`)."""

    __slots__ = ("_backend", "_index")

    def __init__(self, backend: SimulatedBackend, index: int) -> None:
        self._backend, self._index = backend, index

    @property
    def index(self) -> int:
        """NVML device index."""
        return self._index

    def sample(self) -> GpuSample:
        """Read everything about this GPU; never raises."""
        return self._backend.sample_gpu(self._index)


class SimulatedBackend:
    """All GPUs and the host of one simulated node (a `GpuBackend`)."""

    def __init__(
        self,
        node: SimNode,
        clock: Clock,
        *,
        start: float | None = None,
        fleet_names: Collection[str] | None = None,
        shared_inbox: FaultInbox | None = None,
    ) -> None:
        """`start` is the monotonic time the simulation began (default: now); a fleet shares
        one, and its `shared_inbox` routes inbox faults to each backend's queue."""
        self._node, self._clock = node, clock
        self._lock = threading.Lock()
        self._start = clock.monotonic() if start is None else start
        self._wall0 = clock.time() - (clock.monotonic() - self._start)
        self._fleet_names = fleet_names
        # The model starts at the simulation start, not at creation, so a backend a fleet
        # creates late reads exactly as one created at the start would.
        self._load = node.load
        self._gpus = [SimGpu(node, i, node.load, 0.0) for i in range(node.gpu_count)]
        self._devices: list[GpuDevice] = [SimDevice(self, i) for i in range(node.gpu_count)]
        self._host = SimHost(node)
        self._driver = DRIVER_VERSION
        self._pending: list[tuple[float, int, SimFault]] = []
        self._seq = 0
        self._inbound: deque[SimFault] = deque()  # thread-safe hand-over from an inbox
        self._fired: deque[SimFault] = deque(maxlen=MAX_FIRED)
        self._xids: deque[XidEvent] = deque(maxlen=MAX_QUEUED_XIDS)
        self._inbox = shared_inbox
        if shared_inbox is None and node.inbox:
            self._inbox = FaultInbox(node.inbox, self._deliver_from_inbox)
        for fault in node.faults:
            self._schedule(fault, 0.0)

    # -- GpuBackend -----------------------------------------------------------------------------

    def system(self) -> SystemInfo:
        """Driver/CUDA/NVML versions and device count."""
        with self._lock:
            self._advance()
            return SystemInfo(
                driver_version=self._driver,
                cuda_driver_version=CUDA_DRIVER_VERSION,
                nvml_version=NVML_VERSION,
                gpu_count=len(self._gpus),
            )

    def devices(self) -> list[GpuDevice]:
        """The node's GPUs in index order (a lost GPU still appears)."""
        return list(self._devices)

    def drain_xid_events(self) -> list[XidEvent]:
        """XIDs whose time has passed since the last call, each delivered once."""
        with self._lock:
            self._advance()
            events = list(self._xids)
            self._xids.clear()
            return events

    def close(self) -> None:
        """Nothing to release; present for the protocol."""

    # -- simulation controls ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The node's name."""
        return self._node.name

    @property
    def node(self) -> SimNode:
        """The node's static description."""
        return self._node

    @property
    def load(self) -> float:
        """Current load level 0..1."""
        return self._load

    def elapsed(self) -> float:
        """Simulated seconds since the start."""
        return self._elapsed()

    def sample_gpu(self, index: int) -> GpuSample:
        """Sample one GPU now (what `devices()[index].sample()` does)."""
        with self._lock:
            t = self._advance()
            return self._gpus[index].sample(t)

    def host_sample(self) -> HostSample:
        """Simulated host health: memory, load, disks, services, IB rails and the rail map."""
        with self._lock:
            t = self._advance()
            return self._host.sample(t, self._load)

    def set_load(self, load: float) -> None:
        """Run every GPU at `load` (0 idle .. 1 full) from now on."""
        if not 0.0 <= load <= 1.0:
            raise ValueError(f"load must be between 0 and 1, not {load!r}")
        with self._lock:
            t = self._advance()
            for gpu in self._gpus:
                gpu.model.set_load(t, load)
            self._load = load

    def inject(self, fault: SimFault) -> None:
        """Schedule a fault on this node (at its `at`, or now); ValueError if it does not fit."""
        problems = self.check_fault(fault)
        if fault.node is not None and not self._is_mine(fault.node):
            problems.insert(0, f"fault is for node {fault.node!r}, this is {self.name!r}")
        if problems:
            raise ValueError(f"cannot inject {fault.text()!r}: " + "; ".join(problems))
        with self._lock:
            self._schedule(fault, self._elapsed())

    def faults(self) -> tuple[SimFault, ...]:
        """Faults that have fired, in firing order, with `at` set to when they fired."""
        with self._lock:
            self._advance()
            return tuple(self._fired)

    def repair(self) -> None:
        """Simulate a node reboot or repair: fault effects cleared, cumulative counters kept."""
        with self._lock:
            t = self._advance()
            for gpu in self._gpus:
                gpu.repair(t)
            self._host.repair()
            self._driver = DRIVER_VERSION

    def inbox_errors(self) -> list[str]:
        """Problems with inbox lines read so far (bad lines are skipped, never raised)."""
        return self._inbox.errors() if self._inbox is not None else []

    def topology(self) -> SimTopology:
        """The node's SKU, NVLink domain, rack/tray and rail map."""
        n = self._node
        return SimTopology(
            node=n.name,
            sku=n.sku,
            gpu_name=n.profile.gpu_name,
            gpus=n.gpu_count,
            nvlink_domain=n.nvlink_domain,
            cluster_uuid=n.cluster_uuid,
            clique_id=n.clique_id,
            domain_index=n.domain_index,
            rack=n.rack,
            tray=n.tray,
            rails=self._host.rails,
        )

    def check_fault(self, fault: SimFault) -> list[str]:
        """Why a fault does not fit this node's SKU and GPUs (empty when it fits)."""
        return fault_problems(fault, self._node.profile, self._node.gpu_count)

    def enqueue(self, fault: SimFault) -> None:
        """Hand over an already-validated fault from another thread (applied on the next read)."""
        self._inbound.append(fault)

    # -- internals --------------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return self._clock.monotonic() - self._start

    def _is_mine(self, node: str) -> bool:
        return node == self._node.name or node in self._node.aliases

    def _deliver_from_inbox(self, fault: SimFault) -> str | None:
        """Route an inbox fault: queue it if it is ours; a problem text if it fits nowhere."""
        target = fault.node
        if target is None and self._node.index != 0:
            return None  # for the fleet's first node, which is another process
        if target is not None and not self._is_mine(target):
            known = self._fleet_names is not None and target in self._fleet_names
            return None if known else f"no node {target!r} in this fleet"
        problems = self.check_fault(fault)
        if problems:
            return "; ".join(problems)
        self.enqueue(fault)
        return None

    def _schedule(self, fault: SimFault, now: float) -> None:
        at = now if fault.at is None else fault.at
        self._seq += 1
        heapq.heappush(self._pending, (at, self._seq, fault))

    def _advance(self) -> float:
        """Take in inbox faults and fire every fault whose time has passed; returns now."""
        t = self._elapsed()
        if self._inbox is not None:
            self._inbox.poll()
        while self._inbound:
            self._schedule(self._inbound.popleft(), t)
        while self._pending and self._pending[0][0] <= t:
            at, _, fault = heapq.heappop(self._pending)
            self._fire(dataclasses.replace(fault, at=at))
        return t

    def _fire(self, fault: SimFault) -> None:
        at = fault.at or 0.0
        targets = self._gpus if fault.gpu is None else [self._gpus[fault.gpu]]
        if fault.gpu is not None or RULES[fault.kind].target is Target.ANY:
            for gpu in targets:
                gpu.apply(fault, at)
        if fault.kind is FaultKind.FIRMWARE_DRIFT and fault.param("driver"):
            self._driver = str(fault.param("driver"))
        self._host.apply(fault)
        self._fired.append(fault)
        xid = fault.xid
        if xid is not None:
            bus = self._gpus[fault.gpu].pci_bus_id if fault.gpu is not None else None
            text = XID_TEXT.get(xid, "simulated error")
            self._xids.append(
                XidEvent(
                    xid=xid,
                    timestamp=self._wall0 + at,
                    gpu=fault.gpu,
                    pci_bus_id=bus,
                    source="simulated",
                    message=f"NVRM: Xid (PCI:{bus or '?'}): {xid}, {text}",
                )
            )
