"""The operator policy as frozen values: per-SKU GPU limits, node, host and rail limits.

Built only by `agent.policy.loader` after every key has been validated, so a `Policy` in hand is
always complete and in range. Checks read it; nothing mutates it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from agent.model import Action, NodeSample, Severity
from agent.policy.sku import sku_of

DEFAULT_SKU = "default"

# nvmlClocksEventReason bits, by the names the policy uses in `warn_clock_events`.
CLOCK_EVENT_REASONS: Mapping[str, int] = MappingProxyType(
    {
        "gpu_idle": 0x1,
        "applications_clocks_setting": 0x2,
        "sw_power_cap": 0x4,
        "hw_slowdown": 0x8,
        "sync_boost": 0x10,
        "sw_thermal": 0x20,
        "hw_thermal": 0x40,
        "hw_power_brake": 0x80,
        "display_clock_setting": 0x100,
        "board_limit": 0x200,
        "reliability": 0x400,
    }
)


@dataclass(frozen=True, slots=True)
class SkuLimits:
    """What a healthy GPU of one SKU looks like, and the thresholds that judge it."""

    name: str
    match: tuple[str, ...]  # extra NVML-name substrings that select this SKU
    temp_margin_c: float  # WARN when temperature >= slowdown - margin
    expected_nvlinks: int  # 0 = do not check the link count
    min_pcie_gen: int  # 0 = do not check; compared with the link's max generation
    min_pcie_width: int  # 0 = do not check
    check_pcie_width: bool  # WARN when the current width is below the link's max width
    expected_ib_rate_gbps: float  # 0 = do not check
    fabric_expected: bool  # NVLink fabric registration must be COMPLETED
    required_services: tuple[str, ...]
    retired_pages_limit: int  # SBE+DBE retired pages at or above this -> CRITICAL
    uncorrectable_remap_limit: int  # uncorrectable remapped rows at or above this -> WARN
    pcie_replay_rate_factor: float  # multiplies DCGM's per-lane replay budget
    nvlink_crc_critical_per_s: float
    nvlink_crc_warn_delta: int
    nvlink_replay_critical_delta: int
    nvlink_recovery_critical_delta: int
    nvlink5_error_critical_delta: int
    thermal_violation_warn_fraction: float  # of the window's wall time; 0 = any growth
    power_violation_warn_fraction: float
    warn_clock_events: tuple[str, ...]  # CLOCK_EVENT_REASONS names

    @property
    def warn_clock_event_mask(self) -> int:
        """Bitmask of the clock-event reasons that WARN."""
        mask = 0
        for name in self.warn_clock_events:
            mask |= CLOCK_EVENT_REASONS[name]
        return mask


@dataclass(frozen=True, slots=True)
class NodeLimits:
    """Node inventory expectations."""

    expected_gpus: int  # 0 = do not check
    require_persistence_mode: bool


@dataclass(frozen=True, slots=True)
class HostLimits:
    """Host health thresholds."""

    min_mem_available_fraction: float
    disk_warn_fraction: float
    disk_critical_fraction: float
    max_load_per_cpu: float
    required_services: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RailLimits:
    """InfiniBand/RoCE ports and the GPU-to-NIC rail map."""

    expected: bool  # every GPU must have a rail
    expected_ib_ports: int  # 0 = do not check
    ib_devices: tuple[str, ...]  # devices to judge; empty = all
    link_downed_max_delta: int
    symbol_error_max_delta: int

    def watches(self, device: str) -> bool:
        """True when `device` is one of the ports this policy judges."""
        return not self.ib_devices or device in self.ib_devices


@dataclass(frozen=True, slots=True)
class XidOverride:
    """An operator's change to the XID catalog entry of one XID (None = keep the catalog's)."""

    severity: Severity | None = None
    action: Action | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The whole validated policy. `sku` pins the SKU; otherwise GPU names choose it."""

    node: NodeLimits
    host: HostLimits
    rails: RailLimits
    skus: Mapping[str, SkuLimits]
    xid_overrides: Mapping[int, XidOverride] = field(default_factory=dict)
    sku: str | None = None

    def for_sku(self, sku: str) -> SkuLimits:
        """Limits of `sku`, or of the default SKU when the policy has no such section."""
        return self.skus.get(sku) or self.skus[DEFAULT_SKU]

    def sku_for(self, gpu_name: str | None) -> str:
        """SKU of an NVML GPU name: the policy's `match` strings first, then `sku_of`."""
        if not gpu_name:
            return DEFAULT_SKU
        lowered = gpu_name.lower()
        for limits in self.skus.values():
            if any(m.lower() in lowered for m in limits.match):
                return limits.name
        return sku_of(gpu_name)

    def node_sku(self, sample: NodeSample) -> str:
        """The SKU judging `sample`: the pinned one, else that of its first named GPU."""
        if self.sku is not None:
            return self.sku
        for gpu in sample.gpus:
            if gpu.name:
                return self.sku_for(gpu.name)
        return DEFAULT_SKU

    def limits_for(self, sample: NodeSample) -> SkuLimits:
        """The SKU limits that judge `sample`."""
        return self.for_sku(self.node_sku(sample))
