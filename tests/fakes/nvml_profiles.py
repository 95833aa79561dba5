"""Healthy fake GPUs as NVML reports them: H100 SXM (HGX, 18 NVLink4 links) and GB300 (NVLink5).

Values follow nvidia-smi on those parts (thresholds, PCIe, NVLink count, bus ids of an HGX H100
board and of a GB300 compute tray). Knobs on the returned `FakeGpu` script faults.
"""

from __future__ import annotations

import pynvml as real

from agent.model import NVLINK5_COUNTERS
from tests.fakes.fake_pynvml import FakeFabric, FakeGpu, FakeNvml

H100_BUS_IDS = ("18", "2A", "3A", "5D", "9A", "AB", "BA", "DB")
GB300_DOMAINS = ("0008", "0009", "0018", "0019")

_EVENTS = (
    real.nvmlEventTypeSingleBitEccError
    | real.nvmlEventTypeDoubleBitEccError
    | real.nvmlEventTypePState
    | real.nvmlEventTypeXidCriticalError
    | real.nvmlEventTypeClock
    | real.nvmlEventTypePowerSourceChange
    | real.nvmlEventMigConfigChange
    | real.nvmlEventTypeDramRetirementEvent
    | real.nvmlEventTypeDramRetirementFailure
    | real.nvmlEventTypeGpuUnavailableError
    | real.nvmlEventTypeGpuRecoveryAction
)

NVLINK5_FIELD_IDS = tuple(getattr(real, f"NVML_FI_DEV_NVLINK_COUNT_{key.upper()}")
                          for key in NVLINK5_COUNTERS)


def healthy_fabric_mask() -> int:
    """A GB300 health mask with every condition reported and none bad."""
    r = real
    return int(
        r.NVML_GPU_FABRIC_HEALTH_MASK_DEGRADED_BW_FALSE << r.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_DEGRADED_BW
        | r.NVML_GPU_FABRIC_HEALTH_MASK_ROUTE_RECOVERY_FALSE
        << r.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ROUTE_RECOVERY
        | r.NVML_GPU_FABRIC_HEALTH_MASK_ROUTE_UNHEALTHY_FALSE
        << r.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ROUTE_UNHEALTHY
        | r.NVML_GPU_FABRIC_HEALTH_MASK_ACCESS_TIMEOUT_RECOVERY_FALSE
        << r.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_ACCESS_TIMEOUT_RECOVERY
        | r.NVML_GPU_FABRIC_HEALTH_MASK_INCORRECT_CONFIGURATION_NONE
        << r.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_INCORRECT_CONFIGURATION
        | r.NVML_GPU_FABRIC_HEALTH_MASK_PARTITION_ASSIGNED_TRUE
        << r.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_PARTITION_ASSIGNED
        | r.NVML_GPU_FABRIC_HEALTH_MASK_GFM_STATE_CONNECTED
        << r.NVML_GPU_FABRIC_HEALTH_MASK_SHIFT_GFM_STATE
    )


def _common(gpu: FakeGpu) -> FakeGpu:
    gpu.inforom_versions = {real.NVML_INFOROM_OEM: "2.1", real.NVML_INFOROM_ECC: "7.16"}
    gpu.clocks_mhz = {real.NVML_CLOCK_SM: 1980, real.NVML_CLOCK_MEM: 2619}
    gpu.violation_ns = {real.NVML_PERF_POLICY_POWER: 0, real.NVML_PERF_POLICY_THERMAL: 0}
    gpu.unsupported = {"nvmlDeviceGetRetiredPages", "nvmlDeviceGetRetiredPagesPendingStatus"}
    gpu.nvlink_states = [real.NVML_FEATURE_ENABLED] * 18
    gpu.supported_events = _EVENTS
    gpu.set_field(real.NVML_FI_DEV_MEMORY_TEMP, 38, value_type=real.NVML_VALUE_TYPE_UNSIGNED_INT)
    gpu.set_field(real.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION, real.NVML_GPU_RECOVERY_ACTION_NONE,
                  value_type=real.NVML_VALUE_TYPE_UNSIGNED_INT)
    return gpu


def h100_sxm(index: int = 0) -> FakeGpu:
    """A healthy H100 SXM5 80GB on an HGX board (NVSwitch fabric, retired pages N/A)."""
    gpu = FakeGpu(
        name="NVIDIA H100 80GB HBM3",
        uuid=f"GPU-3f1a9c52-8d4e-4b7a-9e21-5c6d7e8f90{index:02x}",
        serial=f"16523210{index:05d}",
        board_part_number="692-2G520-0200-000",
        pci_bus_id=f"00000000:{H100_BUS_IDS[index % 8]}:00.0",
        minor_number=index,
        vbios_version="96.00.99.00.01",
        inforom_image_version="G520.0200.00.05",
        temperature_c=33,
        thresholds={
            real.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 92,
            real.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 89,
            real.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: 87,
            real.NVML_TEMPERATURE_THRESHOLD_MEM_MAX: 95,
        },
        power_usage_mw=71_234,
        enforced_power_limit_mw=700_000,
        total_energy_mj=182_734_551_203,
        fabric=FakeFabric(cluster_uuid=bytes(16), clique_id=0, health_mask=0),
    )
    return _common(gpu)


def gb300(index: int = 0, *, cluster_uuid: bytes | None = None, clique_id: int = 32766) -> FakeGpu:
    """A healthy GB300 in an NVL72 rack: NVLink5 field counters, DL counters NotSupported."""
    gpu = FakeGpu(
        name="NVIDIA GB300",
        uuid=f"GPU-8b2e4f60-1a3c-4d5e-8f70-a1b2c3d4e5{index:02x}",
        serial=f"18524250{index:05d}",
        board_part_number="699-2G548-0202-A00",
        pci_bus_id=f"0000{GB300_DOMAINS[index % 4]}:01:00.0",
        pci_device_id=0,  # not recorded here: fill in from a real capture
        pci_subsystem_id=0,
        minor_number=index,
        vbios_version="97.10.4A.00.02",
        inforom_image_version="G548.0202.00.02",
        temperature_c=36,
        thresholds={
            real.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 95,
            real.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 92,
            real.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: 90,
            real.NVML_TEMPERATURE_THRESHOLD_MEM_MAX: 95,
        },
        power_usage_mw=162_500,
        enforced_power_limit_mw=1_400_000,
        total_energy_mj=95_113_672_004,
        memory_total=296_352_743_424,
        memory_reserved=1_040_187_392,
        pcie_gen=(5, 5),
        fabric=FakeFabric(
            cluster_uuid=cluster_uuid or bytes.fromhex("6f1d2c3b4a5948378e2f1a0b9c8d7e6f"),
            clique_id=clique_id,
            health_mask=healthy_fabric_mask(),
        ),
    )
    gpu = _common(gpu)
    gpu.unsupported.add("nvmlDeviceGetNvLinkErrorCounter")  # deprecated on Blackwell
    for field_id in NVLINK5_FIELD_IDS:
        for link in range(len(gpu.nvlink_states)):
            gpu.set_field(field_id, 0, scope=link)
    return gpu


def h100_node(count: int = 8) -> FakeNvml:
    """An HGX H100 node."""
    return FakeNvml([h100_sxm(i) for i in range(count)])


def gb300_node(count: int = 4) -> FakeNvml:
    """A GB300 compute tray."""
    return FakeNvml([gb300(i) for i in range(count)], driver_version="580.65.06",
                    cuda_driver_version=13000, nvml_version="13.580.65.06")
