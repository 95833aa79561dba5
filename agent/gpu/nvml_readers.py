"""The table of NVML reads that fill a `GpuSample`: one `ReadSpec` per call, in sweep order.

Each spec names the `GpuSample` fields it fills and a reader taking a `ReadContext`. A reader
returns one value per field (or an `Unavailable` in a field's place) and may raise; the sweep in
`nvml_device.py` turns exceptions into `Unavailable` entries. Static specs (identity, firmware,
limits fixed while the driver is loaded) are read until they succeed, then cached.
"""

from __future__ import annotations

import ctypes
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.gpu.nvml_errors import NvmlCodes, NvmlModule
from agent.model import FabricInfo, ReadStatus, Unavailable

MIB = 1024 * 1024


@dataclass(slots=True)
class DeviceState:
    """What one device remembers between sweeps (never identity values: see NvmlDevice)."""

    reprobe_s: float
    link_count: int | None = None
    use_fallback: set[str] = field(default_factory=set)
    unsupported: dict[str, tuple[float, Unavailable]] = field(default_factory=dict)
    plans: dict[tuple[int, bool], Any] = field(default_factory=dict)  # nvml_fields.FieldPlan

    def cached_unsupported(self, key: str, now: float) -> Unavailable | None:
        """The remembered NOT_SUPPORTED answer for `key`, unless it is time to ask again."""
        entry = self.unsupported.get(key)
        if entry is None:
            return None
        if now >= entry[0]:
            del self.unsupported[key]
            return None
        return entry[1]

    def remember_unsupported(self, key: str, why: Unavailable, now: float) -> None:
        """Skip `key` until `reprobe_s` has passed (NotSupported rarely changes at run time)."""
        self.unsupported[key] = (now + self.reprobe_s, why)


@dataclass(slots=True)
class ReadContext:
    """One device, one sweep: the module, the handle, and where partial failures go."""

    n: NvmlModule
    h: Any
    codes: NvmlCodes
    state: DeviceState
    now: float  # monotonic seconds
    unavailable: dict[str, Unavailable]


Reader = Callable[[ReadContext], tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class ReadSpec:
    """One NVML read filling `fields` of a GpuSample."""

    key: str
    fields: tuple[str, ...]
    read: Reader
    fallback: Reader | None = None  # used from then on when `read` raises FunctionNotFound
    static: bool = False  # cannot change while the driver is loaded: cache once read
    optional_api: bool = False  # FunctionNotFound means "this driver has no such API"


def text(value: object) -> str:
    """NVML strings come back as str (pynvml decodes) or bytes (raw struct fields)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def cuda_version_text(version: int) -> str:
    """12040 -> "12.4" (NVML encodes major*1000 + minor*10)."""
    return f"{version // 1000}.{(version % 1000) // 10}"


def _pci_bus_id(c: ReadContext) -> tuple[object, ...]:
    return (text(c.n.nvmlDeviceGetPciInfo_v3(c.h).busId),)


def _temperature(c: ReadContext) -> tuple[object, ...]:
    return (float(c.n.nvmlDeviceGetTemperatureV(c.h, c.n.NVML_TEMPERATURE_GPU)),)


def _temperature_legacy(c: ReadContext) -> tuple[object, ...]:
    return (float(c.n.nvmlDeviceGetTemperature(c.h, c.n.NVML_TEMPERATURE_GPU)),)


def _violation(policy: str) -> Reader:
    def read(c: ReadContext) -> tuple[object, ...]:
        return (int(c.n.nvmlDeviceGetViolationStatus(c.h, getattr(c.n, policy)).violationTime),)

    return read


def _ecc(kind: str, counter: str) -> Reader:
    def read(c: ReadContext) -> tuple[object, ...]:
        n = c.n
        return (int(n.nvmlDeviceGetTotalEccErrors(c.h, getattr(n, kind), getattr(n, counter))),)

    return read


def _retired(cause: str) -> Reader:
    def read(c: ReadContext) -> tuple[object, ...]:
        return (len(c.n.nvmlDeviceGetRetiredPages(c.h, getattr(c.n, cause))),)

    return read


def _memory_v2(c: ReadContext) -> tuple[object, ...]:
    mem = c.n.nvmlDeviceGetMemoryInfo(c.h, version=c.n.nvmlMemory_v2)
    return (mem.used / MIB, mem.free / MIB, mem.reserved / MIB)


def _memory_v1(c: ReadContext) -> tuple[object, ...]:
    mem = c.n.nvmlDeviceGetMemoryInfo(c.h)
    why = Unavailable(ReadStatus.NOT_SUPPORTED, "driver lacks nvmlDeviceGetMemoryInfo_v2")
    return (mem.used / MIB, mem.free / MIB, why)


def _remapped(c: ReadContext) -> tuple[object, ...]:
    corr, unc, pending, failure = c.n.nvmlDeviceGetRemappedRows(c.h)
    return (int(corr), int(unc), bool(pending), bool(failure))


def _utilization(c: ReadContext) -> tuple[object, ...]:
    util = c.n.nvmlDeviceGetUtilizationRates(c.h)
    return (float(util.gpu), float(util.memory))


def decode_fabric(info: Any, *, with_summary: bool) -> FabricInfo:
    """A filled `c_nvmlGpuFabricInfo_v2_t`/`_v3_t` as `FabricInfo` (clusterUuid canonical)."""
    return FabricInfo(
        state=int(info.state),
        status=int(info.status),
        cluster_uuid=str(uuid.UUID(bytes=bytes(bytearray(info.clusterUuid)))),
        clique_id=int(info.cliqueId),
        health_mask=int(info.healthMask),
        health_summary=int(info.healthSummary) if with_summary else None,
    )


def _fabric_v3(c: ReadContext) -> tuple[object, ...]:
    struct_type = getattr(c.n, "c_nvmlGpuFabricInfo_v3_t", None)
    if struct_type is None:  # binding predates v3: behave as an old driver would
        raise c.n.NVMLError(c.codes.argument_version_mismatch)
    info = struct_type()  # its constructor sets .version = nvmlGpuFabricInfo_v3
    c.n.nvmlDeviceGetGpuFabricInfoV(c.h, ctypes.byref(info))
    return (decode_fabric(info, with_summary=True),)


def _fabric_v2(c: ReadContext) -> tuple[object, ...]:
    info = c.n.c_nvmlGpuFabricInfoV_t()  # constructor sets .version = nvmlGpuFabricInfo_v2
    c.n.nvmlDeviceGetGpuFabricInfoV(c.h, ctypes.byref(info))
    return (decode_fabric(info, with_summary=False),)


def _call(fn: str, convert: Callable[[Any], object] = int, *args: str) -> Reader:
    """A reader for `nvml.<fn>(handle, *constants)` converted by `convert`."""

    def read(c: ReadContext) -> tuple[object, ...]:
        return (convert(getattr(c.n, fn)(c.h, *(getattr(c.n, a) for a in args))),)

    return read


def _per_watt(milli: Any) -> float:
    return float(milli) / 1000.0


def _enabled(value: Any) -> bool:
    return int(value) == 1  # NVML_FEATURE_ENABLED


def _simple_specs() -> list[ReadSpec]:
    """Single-call reads; the NVLink and field-value reads live in nvml_links/nvml_fields."""
    s = ReadSpec
    return [
        # identity and firmware: cached once read
        s("name", ("name",), _call("nvmlDeviceGetName", text), static=True),
        s("uuid", ("uuid",), _call("nvmlDeviceGetUUID", text), static=True),
        s("serial", ("serial",), _call("nvmlDeviceGetSerial", text), static=True),
        s("part", ("board_part_number",), _call("nvmlDeviceGetBoardPartNumber", text),
          static=True),
        s("pci", ("pci_bus_id",), _pci_bus_id, static=True),
        s("minor", ("minor_number",), _call("nvmlDeviceGetMinorNumber"), static=True),
        s("vbios", ("vbios_version",), _call("nvmlDeviceGetVbiosVersion", text), static=True),
        s("inforom_image", ("inforom_image_version",),
          _call("nvmlDeviceGetInforomImageVersion", text), static=True),
        s("inforom_oem", ("inforom_oem_version",),
          _call("nvmlDeviceGetInforomVersion", text, "NVML_INFOROM_OEM"), static=True),
        s("inforom_ecc", ("inforom_ecc_version",),
          _call("nvmlDeviceGetInforomVersion", text, "NVML_INFOROM_ECC"), static=True),
        s("slowdown", ("slowdown_temp_c",), _call("nvmlDeviceGetTemperatureThreshold", float,
          "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN"), static=True),
        s("shutdown", ("shutdown_temp_c",), _call("nvmlDeviceGetTemperatureThreshold", float,
          "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN"), static=True),
        s("pcie_gen_max", ("pcie_gen_max",), _call("nvmlDeviceGetMaxPcieLinkGeneration"),
          static=True),
        s("pcie_width_max", ("pcie_width_max",), _call("nvmlDeviceGetMaxPcieLinkWidth"),
          static=True),
        # health: re-read every sweep
        s("persistence", ("persistence_mode",), _call("nvmlDeviceGetPersistenceMode", _enabled)),
        s("temperature", ("temperature_c",), _temperature, _temperature_legacy, optional_api=True),
        s("power", ("power_w",), _call("nvmlDeviceGetPowerUsage", _per_watt)),
        s("power_limit", ("power_limit_w",), _call("nvmlDeviceGetEnforcedPowerLimit", _per_watt)),
        s("energy", ("energy_mj",), _call("nvmlDeviceGetTotalEnergyConsumption")),
        s("sm_clock", ("sm_clock_mhz",), _call("nvmlDeviceGetClockInfo", float, "NVML_CLOCK_SM")),
        s("mem_clock", ("mem_clock_mhz",),
          _call("nvmlDeviceGetClockInfo", float, "NVML_CLOCK_MEM")),
        s("clock_events", ("clock_event_reasons",),
          _call("nvmlDeviceGetCurrentClocksEventReasons"),
          _call("nvmlDeviceGetCurrentClocksThrottleReasons"), optional_api=True),
        s("thermal_violation", ("thermal_violation_ns",), _violation("NVML_PERF_POLICY_THERMAL")),
        s("power_violation", ("power_violation_ns",), _violation("NVML_PERF_POLICY_POWER")),
        s("utilization", ("gpu_util_pct", "mem_copy_util_pct"), _utilization),
        s("memory", ("fb_used_mib", "fb_free_mib", "fb_reserved_mib"), _memory_v2, _memory_v1),
        s("ecc_sbe_vol", ("ecc_sbe_volatile",),
          _ecc("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_VOLATILE_ECC")),
        s("ecc_dbe_vol", ("ecc_dbe_volatile",),
          _ecc("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_VOLATILE_ECC")),
        s("ecc_sbe_agg", ("ecc_sbe_aggregate",),
          _ecc("NVML_MEMORY_ERROR_TYPE_CORRECTED", "NVML_AGGREGATE_ECC")),
        s("ecc_dbe_agg", ("ecc_dbe_aggregate",),
          _ecc("NVML_MEMORY_ERROR_TYPE_UNCORRECTED", "NVML_AGGREGATE_ECC")),
        s("retired_sbe", ("retired_pages_sbe",),
          _retired("NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS")),
        s("retired_dbe", ("retired_pages_dbe",),
          _retired("NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR")),
        s("retired_pending", ("retired_pages_pending",),
          _call("nvmlDeviceGetRetiredPagesPendingStatus", bool)),
        s("remapped_rows", ("remapped_rows_correctable", "remapped_rows_uncorrectable",
          "remap_pending", "remap_failure"), _remapped),
        s("unrepairable", ("memory_unrepairable",),
          _call("nvmlDeviceGetUnrepairableMemoryFlag_v1", bool), optional_api=True),
        s("pcie_gen", ("pcie_gen_current",), _call("nvmlDeviceGetCurrPcieLinkGeneration")),
        s("pcie_width", ("pcie_width_current",), _call("nvmlDeviceGetCurrPcieLinkWidth")),
        s("pcie_replay", ("pcie_replay_count",), _call("nvmlDeviceGetPcieReplayCounter")),
        s("fabric", ("fabric",), _fabric_v3, _fabric_v2, optional_api=True),
    ]


SIMPLE_SPECS: tuple[ReadSpec, ...] = tuple(_simple_specs())
