"""One simulated GPU: seeded identity, fault state, and the `GpuSample` NVML would give.

A sample is a pure function of (seed, elapsed time, load history, applied faults); power, energy
and temperature come from `sim_telemetry.PowerThermal`. Faults are applied at their own time.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agent.gpu.sim_faults import FaultKind, SimFault
from agent.gpu.sim_layout import SimNode, stable_digest
from agent.gpu.sim_profiles import (
    CLOCK_EVENT_GPU_IDLE,
    CLOCK_EVENT_HW_SLOWDOWN,
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    CLOCK_EVENT_SW_POWER_CAP,
    FABRIC_HEALTH_MASK_HEALTHY,
    FABRIC_STATE_COMPLETED,
    FABRIC_SUMMARY_HEALTHY,
    FABRIC_SUMMARY_LIMITED_CAPACITY,
    FABRIC_SUMMARY_UNHEALTHY,
    NO_FABRIC,
    SkuProfile,
    fabric_health_mask_with,
)
from agent.gpu.sim_telemetry import PowerThermal, Waves
from agent.model import (
    NVLINK5_COUNTERS,
    FabricInfo,
    GpuSample,
    NvLinkSample,
    ReadStatus,
    Unavailable,
)

IDLE_LOAD = 0.05  # below this the GPU reports GpuIdle and drops its PCIe generation
_NOT_SUPPORTED = Unavailable(ReadStatus.NOT_SUPPORTED, "Not Supported")
# Identity, firmware and limits: read once by the NVML backend and kept after a GPU is lost.
STATIC_FIELDS = (
    "uuid", "name", "serial", "board_part_number", "pci_bus_id", "minor_number",
    "vbios_version", "inforom_image_version", "inforom_oem_version", "inforom_ecc_version",
    "slowdown_temp_c", "shutdown_temp_c", "pcie_gen_max", "pcie_width_max",
)  # fmt: skip
_LOST_FIELDS = tuple(
    f for f in GpuSample.__dataclass_fields__ if f not in ("index", "unavailable", *STATIC_FIELDS)
)
LOST_UNAVAILABLE: Mapping[str, Unavailable] = MappingProxyType(
    {f: Unavailable(ReadStatus.GPU_LOST, "GPU is lost") for f in _LOST_FIELDS}
)
_DL_COUNTER_KEYS = tuple(
    f"nvlinks.{c}"
    for c in ("replay_errors", "recovery_errors", "crc_flit_errors", "crc_data_errors")
)


def unsupported_fields(profile: SkuProfile) -> Mapping[str, Unavailable]:
    """The readings NVML reports NotSupported on this SKU (keys as the NVML backend writes
    them: a field name, or `nvlinks.<counter>` for a per-link DL counter)."""
    names = ["retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending"]
    if not profile.nvlink5_counters:
        names.append("nvlink5_counters")
    if not profile.nvlink_dl_counters:
        names += _DL_COUNTER_KEYS
    return MappingProxyType(dict.fromkeys(names, _NOT_SUPPORTED))


class SimGpu:
    """Mutable state of one GPU. Not thread-safe: the backend serialises calls."""

    def __init__(self, node: SimNode, index: int, load: float, t0: float) -> None:
        p = self.profile = node.profile
        self.index = index
        digest = stable_digest(node.seed, node.name, index)
        rng = random.Random(int.from_bytes(digest, "big"))
        self.uuid = f"GPU-{uuid.UUID(bytes=digest, version=4)}"
        self.serial = str(1650000000000 + rng.randrange(10**10))
        self.pci_bus_id = p.gpu_pci_bus_ids[index % len(p.gpu_pci_bus_ids)]
        self.vbios = p.vbios_version
        self.model = PowerThermal(p, rng, load, t0)
        self._util_waves = Waves(rng, ((3.0, 9.0), (13.0, 31.0)))
        self.sbe_aggregate = 0 if rng.random() < 0.8 else rng.randrange(1, 40)
        self.dbe_volatile = self.dbe_aggregate = 0
        self.rows_correctable = 0 if rng.random() < 0.9 else rng.randrange(1, 4)
        self.rows_uncorrectable = 0
        self.remap_pending = self.remap_failure = False
        self.recovery_action = 0
        self.lost = False
        self._power_violation_ns = rng.randrange(0, 5 * 10**9)
        self._pcie_replay_base = rng.randrange(0, 3)
        self.pcie_width = p.pcie_width_max
        self.links_up = [True] * p.nvlinks
        self.fabric_state = FABRIC_STATE_COMPLETED
        self.fabric_mask = FABRIC_HEALTH_MASK_HEALTHY
        self._replay_rates: list[tuple[float, float]] = []  # (start, per-second)
        self._link_error_rates: list[tuple[int, float, float]] = []  # (link, start, per-second)
        self._link_errors_at_repair: dict[int, int] = {}
        self._nvlinks_cache: tuple[NvLinkSample, ...] | None = None
        self._unsupported = unsupported_fields(p)
        self._cluster_uuid, self._clique_id = node.cluster_uuid or "", node.clique_id or 0

    # -- faults ---------------------------------------------------------------------------------

    def apply(self, fault: SimFault, t: float) -> None:
        """Apply a fault that fired at time t."""
        kind = fault.kind
        self._nvlinks_cache = None
        if kind is FaultKind.ECC_DBE:
            count = fault.int_param("count")
            self.dbe_volatile += count
            self.dbe_aggregate += count
            if fault.param("remap"):
                self.rows_uncorrectable += 1
                self.remap_pending = True
        elif kind is FaultKind.REMAP_FAILURE:
            self.remap_failure = True
        elif kind is FaultKind.REMAP_PENDING:
            self.rows_uncorrectable += fault.int_param("rows")
            self.remap_pending = True
        elif kind is FaultKind.XID and fault.int_param("code") == 79:
            self.lost = True
        elif kind is FaultKind.THERMAL_SLOWDOWN:
            duration = fault.param("duration")
            self.model.start_thermal_slowdown(t, float(duration) if duration else None)
        elif kind is FaultKind.NVLINK_DOWN:
            self.links_up[fault.int_param("link")] = False
        elif kind is FaultKind.NVLINK_ERRORS:
            self._link_error_rates.append((fault.int_param("link"), t, fault.float_param("rate")))
        elif kind is FaultKind.PCIE_WIDTH:
            self.pcie_width = fault.int_param("width")
        elif kind is FaultKind.PCIE_REPLAY:
            self._replay_rates.append((t, fault.float_param("rate") / 60.0))
        elif kind is FaultKind.FABRIC_INCOMPLETE:
            health = fault.param("health")
            if health:
                self.fabric_state = FABRIC_STATE_COMPLETED
                self.fabric_mask = fabric_health_mask_with(str(health))
            else:
                self.fabric_state = fault.int_param("state")
        elif kind is FaultKind.FIRMWARE_DRIFT:
            self.vbios = str(fault.param("vbios") or self.profile.drift_vbios_version)
        elif kind is FaultKind.RECOVERY_ACTION:
            self.recovery_action = fault.int_param("action")

    def repair(self, t: float) -> None:
        """A GPU reset: clear volatile state and fault effects; cumulative counters remain."""
        self.lost = self.remap_pending = self.remap_failure = False
        self.dbe_volatile = self.recovery_action = 0
        self.pcie_width = self.profile.pcie_width_max
        self.links_up = [True] * self.profile.nvlinks
        self.fabric_state, self.fabric_mask = FABRIC_STATE_COMPLETED, FABRIC_HEALTH_MASK_HEALTHY
        self.vbios = self.profile.vbios_version
        self.model.end_thermal_slowdown(t)
        self._pcie_replay_base = self._pcie_replays(t)
        self._replay_rates = []
        self._link_errors_at_repair = self._link_error_counts(t)
        self._link_error_rates = []
        self._nvlinks_cache = None

    # -- derived readings -----------------------------------------------------------------------

    def _pcie_replays(self, t: float) -> int:
        return self._pcie_replay_base + sum(int(r * (t - s)) for s, r in self._replay_rates)

    def _link_error_counts(self, t: float) -> dict[int, int]:
        counts = dict(self._link_errors_at_repair)
        for link, start, rate in self._link_error_rates:
            counts[link] = counts.get(link, 0) + int(rate * (t - start))
        return counts

    def _nvlinks(self, t: float) -> tuple[NvLinkSample, ...]:
        if self._nvlinks_cache is not None:
            return self._nvlinks_cache
        dl = self.profile.nvlink_dl_counters
        errors = self._link_error_counts(t) if dl else {}
        zero = 0 if dl else None
        links = tuple(
            NvLinkSample(
                link=i,
                up=up,
                replay_errors=errors.get(i, zero),
                recovery_errors=zero,
                crc_flit_errors=errors.get(i, zero),
                crc_data_errors=zero,
            )
            for i, up in enumerate(self.links_up)
        )
        if not self._link_error_rates:  # nothing grows: reuse until the next change
            self._nvlinks_cache = links
        return links

    def _nvlink5(self, t: float) -> Mapping[str, int] | None:
        if not self.profile.nvlink5_counters:
            return None
        counters = dict.fromkeys(NVLINK5_COUNTERS, 0)
        total = sum(self._link_error_counts(t).values())
        counters["symbol_errors"] = counters["effective_errors"] = total
        return counters

    def _fabric(self) -> FabricInfo:
        if not self.profile.has_fabric:
            return NO_FABRIC
        if self.fabric_mask == FABRIC_HEALTH_MASK_HEALTHY:
            summary = FABRIC_SUMMARY_HEALTHY
        elif self.fabric_mask == fabric_health_mask_with("degraded_bw"):
            summary = FABRIC_SUMMARY_LIMITED_CAPACITY
        else:
            summary = FABRIC_SUMMARY_UNHEALTHY
        return FabricInfo(
            state=self.fabric_state,
            status=0,
            cluster_uuid=self._cluster_uuid,
            clique_id=self._clique_id,
            health_mask=self.fabric_mask,
            health_summary=summary,
        )

    def _identity(self) -> dict[str, Any]:
        """Identity and firmware: the same in every sample, lost or not (NVML caches them)."""
        p = self.profile
        return {"index": self.index, "uuid": self.uuid, "name": p.gpu_name, "serial": self.serial,
                "board_part_number": p.board_part_number, "pci_bus_id": self.pci_bus_id,
                "minor_number": self.index, "vbios_version": self.vbios,
                "inforom_image_version": p.inforom_image_version,
                "inforom_oem_version": p.inforom_oem_version,
                "inforom_ecc_version": p.inforom_ecc_version}

    def _lost_sample(self) -> GpuSample:
        """Fell off the bus: every reading GPU_LOST; identity read earlier is kept."""
        p = self.profile
        return GpuSample(
            **self._identity(),
            slowdown_temp_c=p.slowdown_temp_c,
            shutdown_temp_c=p.shutdown_temp_c,
            pcie_gen_max=p.pcie_gen_max,
            pcie_width_max=p.pcie_width_max,
            unavailable=LOST_UNAVAILABLE,
        )

    def sample(self, t: float) -> GpuSample:
        """Everything NVML would report at elapsed time t."""
        if self.lost:
            return self._lost_sample()
        p, model = self.profile, self.model
        load = model.load
        idle = load < IDLE_LOAD
        thermal = model.thermal_active(t)
        temp = model.temperature_c(t)
        reasons = CLOCK_EVENT_GPU_IDLE if idle else (CLOCK_EVENT_SW_POWER_CAP if load >= 0.9 else 0)
        sm_clock = (
            p.sm_idle_mhz if idle else p.sm_max_mhz - 120 * load + 8 * (self._util_waves.value(t))
        )
        if thermal:
            reasons |= CLOCK_EVENT_HW_SLOWDOWN | CLOCK_EVENT_HW_THERMAL_SLOWDOWN
            sm_clock *= 0.55
        util = 0.0 if idle else min(100.0, max(0.0, 100 * load + 3 * self._util_waves.value(t)))
        usable = p.fb_total_mib - p.fb_reserved_mib
        fb_used = round(0.006 * usable + load * 0.88 * usable)
        fabric = self._fabric()
        retired: int | None = None
        return GpuSample(
            **self._identity(),
            persistence_mode=True,
            temperature_c=round(temp),
            slowdown_temp_c=p.slowdown_temp_c,
            shutdown_temp_c=p.shutdown_temp_c,
            memory_temp_c=round(temp + p.hbm_temp_offset_c),
            power_w=round(model.power_w(t), 3),
            power_limit_w=p.power_limit_w,
            energy_mj=int(model.energy_j(t) * 1000),
            sm_clock_mhz=round(sm_clock),
            mem_clock_mhz=p.mem_clock_mhz,
            clock_event_reasons=reasons,
            thermal_violation_ns=model.thermal_violation_ns(t),
            power_violation_ns=self._power_violation_ns,
            gpu_util_pct=round(util),
            mem_copy_util_pct=round(util * 0.45),
            fb_used_mib=fb_used,
            fb_free_mib=usable - fb_used,
            fb_reserved_mib=p.fb_reserved_mib,
            ecc_sbe_volatile=0,
            ecc_dbe_volatile=self.dbe_volatile,
            ecc_sbe_aggregate=self.sbe_aggregate,
            ecc_dbe_aggregate=self.dbe_aggregate,
            retired_pages_sbe=retired,
            retired_pages_dbe=retired,
            retired_pages_pending=None,
            remapped_rows_correctable=self.rows_correctable,
            remapped_rows_uncorrectable=self.rows_uncorrectable,
            remap_pending=self.remap_pending,
            remap_failure=self.remap_failure,
            memory_unrepairable=False,
            recovery_action=self.recovery_action,
            nvlinks=self._nvlinks(t),
            nvlink5_counters=self._nvlink5(t),
            pcie_gen_current=1 if idle else p.pcie_gen_max,
            pcie_gen_max=p.pcie_gen_max,
            pcie_width_current=self.pcie_width,
            pcie_width_max=p.pcie_width_max,
            pcie_replay_count=self._pcie_replays(t),
            fabric=fabric,
            unavailable=self._unsupported,
        )
