"""SKU profiles for the simulated fleet: what an H100 HGX node or a GB300 NVL72 tray looks like.

Each profile holds the constants the real NVML would report for that SKU (names, limits,
thresholds, link counts, firmware strings) and which readings are not supported there, so the
simulator fills exactly the `GpuSample` fields the NVML backend fills on that hardware:

- H100 SXM (HGX, NVSwitch inside the node): NVLink DL error counters per link, no NVLink5 field
  counters, no retired pages (row remapping instead), fabric state NOT_SUPPORTED (the call
  succeeds with state 0; the node is its own NVLink domain, no multi-node fabric registration).
- GB300 (NVL72 compute tray): NVLink5 field counters (DL counters deprecated, so per-link error
  counters are absent), no retired pages, fabric COMPLETED with the rack's clusterUuid/cliqueId.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from agent.model import FabricInfo

DRIVER_VERSION = "580.95.05"
CUDA_DRIVER_VERSION = "13.0"
NVML_VERSION = "13.580.95.05"

# nvmlClocksEventReason bits (NVML).
CLOCK_EVENT_GPU_IDLE = 0x1
CLOCK_EVENT_SW_POWER_CAP = 0x4
CLOCK_EVENT_HW_SLOWDOWN = 0x8
CLOCK_EVENT_HW_THERMAL_SLOWDOWN = 0x40

# NVML_GPU_FABRIC_STATE_*.
FABRIC_STATE_NOT_STARTED = 1
FABRIC_STATE_IN_PROGRESS = 2
FABRIC_STATE_COMPLETED = 3

# NVML_GPU_FABRIC_HEALTH_SUMMARY_*.
FABRIC_SUMMARY_HEALTHY = 1
FABRIC_SUMMARY_UNHEALTHY = 2
FABRIC_SUMMARY_LIMITED_CAPACITY = 3

# What nvmlDeviceGetGpuFabricInfoV returns on a GPU outside any multi-node NVLink fabric (HGX
# H100: nvidia-smi shows Fabric State "N/A"): the call succeeds with state NOT_SUPPORTED.
NO_FABRIC = FabricInfo(
    state=0,
    status=0,
    cluster_uuid="00000000-0000-0000-0000-000000000000",
    clique_id=0,
    health_mask=0,
    health_summary=0,
)

# NVML_GPU_FABRIC_HEALTH_MASK_*: 2-bit fields are NOT_SUPPORTED 0 / TRUE 1 (bad) / FALSE 2.
FABRIC_HEALTH_SHIFTS: Mapping[str, int] = MappingProxyType(
    {"degraded_bw": 0, "route_recovery": 2, "route_unhealthy": 4, "access_timeout_recovery": 6}
)
_HEALTH_FALSE = 2
_HEALTH_TRUE = 1
_INCORRECT_CONFIGURATION_NONE = 1 << 8
# Healthy tray: every 2-bit problem flag FALSE, incorrect-configuration NONE; partition and GFM
# state left NOT_SUPPORTED (0) so no healthy bit reads as TRUE.
FABRIC_HEALTH_MASK_HEALTHY = (
    sum(_HEALTH_FALSE << s for s in FABRIC_HEALTH_SHIFTS.values()) + _INCORRECT_CONFIGURATION_NONE
)


def fabric_health_mask_with(problem: str) -> int:
    """The healthy mask with one 2-bit problem flag (a FABRIC_HEALTH_SHIFTS key) set TRUE."""
    shift = FABRIC_HEALTH_SHIFTS[problem]
    return (FABRIC_HEALTH_MASK_HEALTHY & ~(0x3 << shift)) | (_HEALTH_TRUE << shift)


# NVML_GPU_RECOVERY_ACTION_* by name, for fault parameters.
RECOVERY_ACTIONS: Mapping[str, int] = MappingProxyType(
    {
        "none": 0,
        "gpu_reset": 1,
        "node_reboot": 2,
        "drain_p2p": 3,
        "drain_and_reset": 4,
        "recover_imex_domain": 5,
        "bus_reset": 6,
        "system_reboot": 7,
    }
)



@dataclass(frozen=True, slots=True)
class SkuProfile:
    """Constants of one SKU, as NVML and sysfs would report them on a healthy node."""

    key: str  # spec name: "h100_sxm"
    name_prefix: str  # node names: "h100"
    gpu_name: str
    gpus: int  # GPUs per node (tray)
    board_part_number: str
    vbios_version: str
    drift_vbios_version: str  # what `firmware_drift` flashes by default
    inforom_image_version: str
    inforom_oem_version: str
    inforom_ecc_version: str
    gpu_pci_bus_ids: tuple[str, ...]
    nvlinks: int
    nvlink_dl_counters: bool  # per-link replay/recovery/CRC counters (pre-Blackwell)
    nvlink5_counters: bool  # NVLink5 field counters (Blackwell)
    has_fabric: bool  # multi-node NVLink fabric registration (clusterUuid/cliqueId)
    pcie_gen_max: int
    pcie_width_max: int
    power_limit_w: float
    idle_power_w: float
    idle_temp_c: float
    load_temp_c: float
    slowdown_temp_c: float
    shutdown_temp_c: float
    hbm_temp_offset_c: float  # HBM runs this much hotter than the GPU core
    sm_idle_mhz: float
    sm_max_mhz: float
    mem_clock_mhz: float
    fb_total_mib: float
    fb_reserved_mib: float
    ib_rails: int
    ib_rate_gbps: float
    ib_link_layer: str
    nic_pci_bus_ids: tuple[str, ...]
    numa_nodes: int  # GPUs and NICs split evenly over this many NUMA nodes
    host_cpus: int
    host_mem_bytes: int
    services: tuple[str, ...]
    default_domain_size: int  # nodes per NVLink domain
    max_domain_size: int

    def numa_of(self, index: int, count: int) -> int:
        """NUMA node of the index-th of `count` devices spread evenly over the sockets."""
        return index * self.numa_nodes // max(count, 1)


H100_SXM = SkuProfile(
    key="h100_sxm",
    name_prefix="h100",
    gpu_name="NVIDIA H100 80GB HBM3",
    gpus=8,
    board_part_number="692-2G520-0200-000",
    vbios_version="96.00.A5.00.01",
    drift_vbios_version="96.00.74.00.1C",
    inforom_image_version="G520.0200.00.05",
    inforom_oem_version="2.1",
    inforom_ecc_version="7.16",
    gpu_pci_bus_ids=tuple(
        f"00000000:{bus}:00.0" for bus in ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
    ),
    nvlinks=18,
    nvlink_dl_counters=True,
    nvlink5_counters=False,
    has_fabric=False,
    pcie_gen_max=5,
    pcie_width_max=16,
    power_limit_w=700.0,
    idle_power_w=72.0,
    idle_temp_c=33.0,
    load_temp_c=68.0,
    slowdown_temp_c=90.0,
    shutdown_temp_c=92.0,
    hbm_temp_offset_c=7.0,
    sm_idle_mhz=345.0,
    sm_max_mhz=1980.0,
    mem_clock_mhz=2619.0,
    fb_total_mib=81559.0,
    fb_reserved_mib=589.0,
    ib_rails=8,
    ib_rate_gbps=400.0,
    ib_link_layer="InfiniBand",
    nic_pci_bus_ids=tuple(
        f"00000000:{bus}:00.0" for bus in ("1A", "2C", "3C", "5F", "9C", "AD", "BC", "DD")
    ),
    numa_nodes=2,
    host_cpus=224,
    host_mem_bytes=2 * 1024**4,
    services=("nvidia-persistenced", "nvidia-fabricmanager"),
    default_domain_size=1,
    max_domain_size=1,
)

GB300 = SkuProfile(
    key="gb300",
    name_prefix="gb300",
    gpu_name="NVIDIA GB300",
    gpus=4,
    board_part_number="699-2G548-1200-000",
    vbios_version="97.10.4A.00.06",
    drift_vbios_version="97.10.2F.00.03",
    inforom_image_version="G548.0205.00.02",
    inforom_oem_version="2.2",
    inforom_ecc_version="8.0",
    gpu_pci_bus_ids=(
        "00000008:01:00.0",
        "00000009:01:00.0",
        "00000018:01:00.0",
        "00000019:01:00.0",
    ),
    nvlinks=18,
    nvlink_dl_counters=False,
    nvlink5_counters=True,
    has_fabric=True,
    pcie_gen_max=5,
    pcie_width_max=16,
    power_limit_w=1400.0,
    idle_power_w=185.0,
    idle_temp_c=30.0,
    load_temp_c=62.0,
    slowdown_temp_c=88.0,
    shutdown_temp_c=93.0,
    hbm_temp_offset_c=6.0,
    sm_idle_mhz=555.0,
    sm_max_mhz=2062.0,
    mem_clock_mhz=3996.0,
    fb_total_mib=284208.0,
    fb_reserved_mib=1024.0,
    ib_rails=4,
    ib_rate_gbps=800.0,
    ib_link_layer="InfiniBand",
    nic_pci_bus_ids=(
        "00000000:03:00.0",
        "00000002:03:00.0",
        "00000010:03:00.0",
        "00000012:03:00.0",
    ),
    numa_nodes=2,
    host_cpus=144,
    host_mem_bytes=960 * 1024**3,
    services=("nvidia-persistenced", "nvidia-imex"),
    default_domain_size=18,
    max_domain_size=18,
)

PROFILES: Mapping[str, SkuProfile] = MappingProxyType({p.key: p for p in (H100_SXM, GB300)})


def profile_for(sku: str) -> SkuProfile:
    """The profile named `sku`; KeyError naming the known SKUs otherwise."""
    try:
        return PROFILES[sku]
    except KeyError:
        raise KeyError(f"unknown SKU {sku!r} (known: {', '.join(sorted(PROFILES))})") from None
