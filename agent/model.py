"""Domain types of the node agent: readings, samples, findings and verdicts.

Everything a collector reads lands in a frozen dataclass here; every check consumes these and
returns `Finding`s. A reading that could not be taken is `None` in its field and explains itself
in the sample's `unavailable` map, keyed by the field name, so checks can tell "not applicable on
this GPU" (no finding) from "could not read" (UNKNOWN) from "the GPU is gone" (CRITICAL).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from gpufleet_common.severity import Severity as Severity  # the checks' vocabulary

EvidenceValue = str | int | float | bool | None

# Blackwell NVLink5 error counters a GpuSample's `nvlink5_counters` holds (summed over links), by
# the lower-case suffix of their NVML_FI_DEV_NVLINK_COUNT_* field. Error counters only: packet
# and byte throughput are not health, and BER fields are encoded ratios that must not be summed.
NVLINK5_COUNTERS: tuple[str, ...] = (
    "malformed_packet_errors",
    "buffer_overrun_errors",
    "rcv_errors",
    "rcv_remote_errors",
    "rcv_general_errors",
    "local_link_integrity_errors",
    "xmit_discards",
    "link_recovery_successful_events",
    "link_recovery_failed_events",
    "link_recovery_events",
    "effective_errors",
    "symbol_errors",
)


class Action(StrEnum):
    """NVIDIA's resolution buckets, as the operator acts on them. `rank` orders escalation."""

    NONE = "none"
    RESTART_APP = "restart_app"
    DRAIN = "drain"
    RESET_GPU = "reset_gpu"
    REBOOT_NODE = "reboot_node"
    SERVICE = "service"

    @property
    def rank(self) -> int:
        """Escalation order: none < restart_app < drain < reset_gpu < reboot_node < service."""
        return list(Action).index(self)


def worst_severity(severities: Iterable[Severity]) -> Severity:
    """Worst of an iterable of severities; OK when empty."""
    result = Severity.OK
    for sev in severities:
        if sev.rank > result.rank:
            result = sev
    return result


def strongest_action(actions: Iterable[Action]) -> Action:
    """Most escalated of an iterable of actions; NONE when empty."""
    result = Action.NONE
    for act in actions:
        if act.rank > result.rank:
            result = act
    return result


class ReadStatus(StrEnum):
    """Why a reading is missing."""

    NOT_SUPPORTED = "not_supported"  # this GPU/driver has no such counter: not applicable
    ERROR = "error"  # the read failed for another reason: UNKNOWN
    GPU_LOST = "gpu_lost"  # NVMLError_GpuIsLost: the GPU fell off the bus


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A reading that could not be taken, and why (`detail` is the NVML error text)."""

    status: ReadStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class NvLinkSample:
    """One NVLink of one GPU. Error counters are cumulative (pre-Blackwell DL counters)."""

    link: int
    up: bool
    replay_errors: int | None = None
    recovery_errors: int | None = None
    crc_flit_errors: int | None = None
    crc_data_errors: int | None = None


@dataclass(frozen=True, slots=True)
class FabricInfo:
    """`nvmlDeviceGetGpuFabricInfoV`: NVLink-fabric membership (Hopper NVSwitch, GB200/GB300)."""

    state: int  # NVML_GPU_FABRIC_STATE_*: 0 unsupported, 1 not started, 2 in progress, 3 done
    status: int  # nvmlReturn_t of fabric registration; meaningful only when state == 3
    cluster_uuid: str  # NVLink domain identity, with clique_id
    clique_id: int
    health_mask: int
    health_summary: int | None = None  # v3 struct: NVML_GPU_FABRIC_HEALTH_SUMMARY_*; None on v2


@dataclass(frozen=True, slots=True)
class GpuSample:
    """Everything read from one GPU in one sweep. `None` fields are explained in `unavailable`."""

    index: int
    uuid: str | None = None
    name: str | None = None
    serial: str | None = None
    board_part_number: str | None = None
    pci_bus_id: str | None = None
    minor_number: int | None = None  # /dev/nvidiaN
    vbios_version: str | None = None
    inforom_image_version: str | None = None
    inforom_oem_version: str | None = None
    inforom_ecc_version: str | None = None
    persistence_mode: bool | None = None
    # thermals and power
    temperature_c: float | None = None
    slowdown_temp_c: float | None = None
    shutdown_temp_c: float | None = None
    memory_temp_c: float | None = None  # HBM, field value NVML_FI_DEV_MEMORY_TEMP
    power_w: float | None = None
    power_limit_w: float | None = None
    energy_mj: int | None = None  # total energy since driver load
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    clock_event_reasons: int | None = None  # nvmlClocksEventReason bitmask
    thermal_violation_ns: int | None = None
    power_violation_ns: int | None = None
    gpu_util_pct: float | None = None
    mem_copy_util_pct: float | None = None
    fb_used_mib: float | None = None
    fb_free_mib: float | None = None
    fb_reserved_mib: float | None = None
    # memory health
    ecc_sbe_volatile: int | None = None
    ecc_dbe_volatile: int | None = None
    ecc_sbe_aggregate: int | None = None
    ecc_dbe_aggregate: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    memory_unrepairable: bool | None = None
    recovery_action: int | None = None  # NVML_GPU_RECOVERY_ACTION_*; 0 none
    # interconnect
    nvlinks: tuple[NvLinkSample, ...] | None = None
    nvlink5_counters: Mapping[str, int] | None = None  # Blackwell field counters, summed over links
    pcie_gen_current: int | None = None
    pcie_gen_max: int | None = None
    pcie_width_current: int | None = None
    pcie_width_max: int | None = None
    pcie_replay_count: int | None = None
    fabric: FabricInfo | None = None
    unavailable: Mapping[str, Unavailable] = field(default_factory=dict)

    @property
    def lost(self) -> bool:
        """True when any read said the GPU is lost (fell off the bus)."""
        return any(u.status is ReadStatus.GPU_LOST for u in self.unavailable.values())


@dataclass(frozen=True, slots=True)
class XidEvent:
    """One XID seen on this node, from NVML events or the kernel log."""

    xid: int
    timestamp: float  # wall-clock seconds
    gpu: int | None = None  # GPU index when known
    pci_bus_id: str | None = None
    source: str = "nvml"  # "nvml" | "kmsg" | "simulated"
    message: str = ""


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """Node-wide NVML facts."""

    driver_version: str | None = None
    cuda_driver_version: str | None = None  # "12.4"
    nvml_version: str | None = None
    gpu_count: int | None = None
    unavailable: Mapping[str, Unavailable] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IbPort:
    """One InfiniBand/RoCE port from /sys/class/infiniband/<device>/ports/<port>."""

    device: str  # mlx5_0
    port: int
    state: str  # "ACTIVE", "DOWN", ... (text after "N: ")
    phys_state: str  # "LinkUp", "Polling", ...
    rate_gbps: float | None
    link_layer: str  # "InfiniBand" | "Ethernet"
    counters: Mapping[str, int] = field(default_factory=dict)  # symbol_error, link_downed, ...
    pci_bus_id: str | None = None
    numa_node: int | None = None


@dataclass(frozen=True, slots=True)
class HostSample:
    """Host health read through psutil and sysfs."""

    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    load1: float | None = None
    cpu_count: int | None = None
    disks: Mapping[str, float] = field(default_factory=dict)  # mount -> used fraction 0..1
    services: Mapping[str, bool] = field(default_factory=dict)  # required service -> running
    ib_ports: tuple[IbPort, ...] = ()
    rails: Mapping[int, str] = field(default_factory=dict)  # GPU index -> "mlx5_0/1" by affinity
    unavailable: Mapping[str, Unavailable] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeSample:
    """One full sweep of a node: what the checks judge and the exporter shows."""

    hostname: str
    timestamp: float  # wall-clock seconds when the sweep started
    monotonic: float  # monotonic seconds, for rates between sweeps
    system: SystemInfo
    gpus: tuple[GpuSample, ...]
    xid_events: tuple[XidEvent, ...] = ()  # XIDs that arrived since the previous sweep
    host: HostSample | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """One judgement: what check, how bad, which GPU (None = node), what to do, and why."""

    check: str
    severity: Severity
    message: str
    gpu: int | None = None
    action: Action = Action.NONE
    evidence: Mapping[str, EvidenceValue] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """The design.md finding shape."""
        return {
            "check": self.check,
            "severity": self.severity.value,
            "gpu": self.gpu,
            "message": self.message,
            "action": self.action.value,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class NodeReport:
    """A judged sweep: the sample, the findings, and the node's verdict."""

    sample: NodeSample
    findings: tuple[Finding, ...]

    @property
    def verdict(self) -> Severity:
        """Worst severity over all findings."""
        return worst_severity(f.severity for f in self.findings)

    @property
    def action(self) -> Action:
        """Most escalated action any finding recommends."""
        return strongest_action(f.action for f in self.findings)
