"""The scriptable state of one fake GPU, as NVML reports it (see fake_pynvml.FakeNvml)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pynvml as real

GARBAGE = 9223372036854775794  # what a failed field value holds (dcgm-exporter #460)


def nvml_error(code: int) -> Exception:
    """The real pynvml exception for `code` (NVMLError_NotSupported for 3, ...)."""
    err: Exception = real.NVMLError(code)
    return err


@dataclass
class FakeFabric:
    """What `nvmlDeviceGetGpuFabricInfoV` reports, and which struct versions the driver knows."""

    state: int = real.NVML_GPU_FABRIC_STATE_COMPLETED
    status: int = real.NVML_SUCCESS
    cluster_uuid: bytes = bytes(16)
    clique_id: int = 0
    health_mask: int = 0
    health_summary: int = real.NVML_GPU_FABRIC_HEALTH_SUMMARY_HEALTHY
    versions: frozenset[int] = frozenset({real.nvmlGpuFabricInfo_v2, real.nvmlGpuFabricInfo_v3})


@dataclass
class FakeGpu:
    """One fake GPU: raw values as NVML returns them (mW, mJ, bytes, ns), plus failure knobs."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-00000000-0000-0000-0000-000000000000"
    serial: str = "1650000000000"
    board_part_number: str = "692-2G520-0200-000"
    pci_bus_id: str = "00000000:18:00.0"
    pci_device_id: int = 0x233010DE  # H100 SXM5
    pci_subsystem_id: int = 0x16C110DE
    minor_number: int = 0
    vbios_version: str = "96.00.99.00.01"
    inforom_image_version: str = "G520.0200.00.05"
    inforom_versions: dict[int, str] = field(default_factory=dict)  # NVML_INFOROM_* -> text
    persistence_mode: int = real.NVML_FEATURE_ENABLED
    temperature_c: int = 33
    thresholds: dict[int, int] = field(default_factory=dict)  # NVML_TEMPERATURE_THRESHOLD_*
    power_usage_mw: int = 71_000
    enforced_power_limit_mw: int = 700_000
    total_energy_mj: int = 0
    clocks_mhz: dict[int, int] = field(default_factory=dict)  # NVML_CLOCK_*
    clocks_event_reasons: int = real.nvmlClocksEventReasonGpuIdle
    violation_ns: dict[int, int] = field(default_factory=dict)  # NVML_PERF_POLICY_*
    utilization: tuple[int, int] = (0, 0)  # gpu %, memory %
    memory_total: int = 85_520_809_984
    memory_reserved: int = 666_894_336
    memory_used: int = 4_194_304
    ecc: dict[tuple[int, int], int] = field(default_factory=dict)  # (error type, counter type)
    retired_pages: dict[int, list[int]] = field(default_factory=dict)  # cause -> addresses
    retired_pages_pending: int = 0
    remapped_rows: tuple[int, int, int, int] = (0, 0, 0, 0)  # corr, unc, pending, failure
    unrepairable_memory: int = 0
    nvlink_states: list[int] = field(default_factory=list)  # one per link
    nvlink_end_error: int = real.NVML_ERROR_INVALID_ARGUMENT  # raised past the last link
    nvlink_errors: dict[tuple[int, int], int] = field(default_factory=dict)  # (link, counter)
    pcie_gen: tuple[int, int] = (5, 5)  # current, max
    pcie_width: tuple[int, int] = (16, 16)
    pcie_replay: int = 0
    fabric: FakeFabric | None = None  # None: the call raises NotSupported
    field_values: dict[tuple[int, int], tuple[int, int | float]] = field(default_factory=dict)
    field_returns: dict[int | tuple[int, int], int] = field(default_factory=dict)
    supported_events: int = 0
    pending_events: list[tuple[int, int]] = field(default_factory=list)  # (type, data)
    # failure knobs, by pynvml function name (the C symbol for versioned ones)
    unsupported: set[str] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)
    call_errors: dict[tuple[str, tuple[int, ...]], int] = field(default_factory=dict)
    lost: bool = False

    def set_field(self, field_id: int, value: int | float, scope: int = 0,
                  value_type: int = real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG) -> None:
        """Script a field value (success) for `nvmlDeviceGetFieldValues`."""
        self.field_values[(field_id, scope)] = (value_type, value)
