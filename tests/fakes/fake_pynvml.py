"""A faithful fake of the `pynvml` module boundary, for driving `NvmlBackend` without a GPU.

`FakeNvml` exposes the function names the backend calls, with pynvml's signatures and return
types (str, int, the real ctypes structs, real `c_nvmlDevice_t` handles), and raises pynvml's real
error classes via `pynvml.NVMLError(code)`. Every other attribute (NVML_* constants, struct types,
error classes) is pynvml's own. A function the fake does not implement is an AttributeError, so a
backend calling something unscripted fails loudly.

Each GPU is a scriptable `FakeGpu`; `nvml_profiles` builds healthy H100-SXM and GB300 ones and
`capture_nvml` turns a capture from a real GPU into them (`load_captured`).
"""

from __future__ import annotations

import collections
import ctypes
import inspect
import struct
from collections.abc import Sequence
from typing import Any

import pynvml as real

from tests.fakes.nvml_fake_events import FakeEvents
from tests.fakes.nvml_fake_gpu import GARBAGE, FakeFabric, FakeGpu, nvml_error

__all__ = ["GARBAGE", "FakeFabric", "FakeGpu", "FakeNvml", "load_captured", "nvml_error"]


class FakeNvml(FakeEvents):
    """The fake module: `NvmlBackend(nvml=FakeNvml([...]))`. Thread-safe for events."""

    def __init__(
        self,
        gpus: Sequence[FakeGpu] = (),
        *,
        driver_version: str = "570.133.20",
        cuda_driver_version: int = 12080,
        nvml_version: str = "12.570.133.20",
        init_error: int | None = None,
        system_errors: dict[str, int] | None = None,
    ) -> None:
        self.gpus = list(gpus)
        self.driver_version = driver_version
        self.cuda_driver_version = cuda_driver_version
        self.nvml_version = nvml_version
        self.init_error = init_error
        self.system_errors = dict(system_errors or {})
        self.calls: collections.Counter[str] = collections.Counter()
        self._refcount = 0
        self._structs = [real.struct_c_nvmlDevice_t() for _ in self.gpus]
        self._handles = [ctypes.pointer(s) for s in self._structs]
        self._by_id = {id(h): i for i, h in enumerate(self._handles)}
        self._by_address = {ctypes.addressof(s): i for i, s in enumerate(self._structs)}
        self._init_events()

    # -- module attributes --------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """pynvml's constants, struct types and error classes; never its functions."""
        value = getattr(real, name)
        if inspect.isfunction(value):
            raise AttributeError(f"FakeNvml does not implement {name}")
        self.__dict__[name] = value  # cache: the backend reads constants every sweep
        return value

    # -- plumbing -------------------------------------------------------------------------------

    def _system(self, fn: str) -> None:
        self.calls[fn] += 1
        if self._refcount <= 0:
            raise nvml_error(real.NVML_ERROR_UNINITIALIZED)
        code = self.system_errors.get(fn)
        if code is not None:
            raise nvml_error(code)

    def _index_of(self, handle: Any) -> int:
        index = self._by_id.get(id(handle))
        if index is None:
            try:
                address = ctypes.cast(handle, ctypes.c_void_p).value
            except (TypeError, ctypes.ArgumentError):
                address = None
            index = self._by_address.get(address) if address is not None else None
        if index is None:
            raise nvml_error(real.NVML_ERROR_INVALID_ARGUMENT)
        return index

    def _gpu(self, handle: Any, fn: str, *args: int) -> FakeGpu:
        self.calls[fn] += 1
        if self._refcount <= 0:
            raise nvml_error(real.NVML_ERROR_UNINITIALIZED)
        gpu = self.gpus[self._index_of(handle)]
        if gpu.lost:
            raise nvml_error(real.NVML_ERROR_GPU_IS_LOST)
        if fn in gpu.unsupported:
            raise nvml_error(real.NVML_ERROR_NOT_SUPPORTED)
        code = gpu.errors.get(fn)
        if code is None and gpu.call_errors:
            code = gpu.call_errors.get((fn, args))
        if code is not None:
            raise nvml_error(code)
        return gpu

    def handle(self, index: int) -> Any:
        """The handle of GPU `index` (what nvmlDeviceGetHandleByIndex returns)."""
        return self._handles[index]

    # -- init, system, handles --------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise nvml_error(self.init_error)
        self._refcount += 1

    def nvmlShutdown(self) -> None:
        self._system("nvmlShutdown")
        self._refcount -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._system("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._system("nvmlSystemGetCudaDriverVersion")
        return self.cuda_driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._system("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_driver_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        self._system("nvmlSystemGetNVMLVersion")
        return self.nvml_version

    def nvmlDeviceGetCount(self) -> int:
        self._system("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if not 0 <= index < len(self.gpus):
            self._system("nvmlDeviceGetHandleByIndex")
            raise nvml_error(real.NVML_ERROR_INVALID_ARGUMENT)
        self._gpu(self._handles[index], "nvmlDeviceGetHandleByIndex")
        return self._handles[index]

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        self._gpu(handle, "nvmlDeviceGetIndex")
        return self._index_of(handle)

    # -- identity -------------------------------------------------------------------------------

    def nvmlDeviceGetName(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetSerial(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetSerial").serial

    def nvmlDeviceGetBoardPartNumber(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetBoardPartNumber").board_part_number

    def nvmlDeviceGetPciInfo_v3(self, h: Any) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetPciInfo_v3")
        bus_id = gpu.pci_bus_id
        domain, bus, rest = bus_id.split(":")
        info = real.nvmlPciInfo_t()
        info.busId = bus_id.encode()
        info.busIdLegacy = bus_id[4:].encode()  # "0000:18:00.0"
        info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(rest[:2], 16)
        info.pciDeviceId, info.pciSubSystemId = gpu.pci_device_id, gpu.pci_subsystem_id
        return info

    def nvmlDeviceGetPciInfo(self, h: Any) -> Any:
        return self.nvmlDeviceGetPciInfo_v3(h)

    def nvmlDeviceGetMinorNumber(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetMinorNumber").minor_number

    def nvmlDeviceGetVbiosVersion(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetVbiosVersion").vbios_version

    def nvmlDeviceGetInforomImageVersion(self, h: Any) -> str:
        return self._gpu(h, "nvmlDeviceGetInforomImageVersion").inforom_image_version

    def nvmlDeviceGetInforomVersion(self, h: Any, obj: int) -> str:
        gpu = self._gpu(h, "nvmlDeviceGetInforomVersion", obj)
        if obj not in gpu.inforom_versions:
            raise nvml_error(real.NVML_ERROR_NOT_SUPPORTED)
        return gpu.inforom_versions[obj]

    def nvmlDeviceGetPersistenceMode(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetPersistenceMode").persistence_mode

    # -- thermals, power, clocks ------------------------------------------------------------------

    def nvmlDeviceGetTemperatureV(
        self, h: Any, sensor: int, version: int = real.nvmlTemperature_v1
    ) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetTemperatureV", sensor)
        if version != real.nvmlTemperature_v1:
            raise nvml_error(real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return gpu.temperature_c

    def nvmlDeviceGetTemperature(self, h: Any, sensor: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTemperature", sensor).temperature_c

    def nvmlDeviceGetTemperatureThreshold(self, h: Any, threshold: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetTemperatureThreshold", threshold)
        if threshold not in gpu.thresholds:
            raise nvml_error(real.NVML_ERROR_NOT_SUPPORTED)
        return gpu.thresholds[threshold]

    def nvmlDeviceGetPowerUsage(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_usage_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit").enforced_power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").total_energy_mj

    def nvmlDeviceGetClockInfo(self, h: Any, clock_type: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetClockInfo", clock_type)
        if clock_type not in gpu.clocks_mhz:
            raise nvml_error(real.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.clocks_mhz[clock_type]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").clocks_event_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksThrottleReasons").clocks_event_reasons

    def nvmlDeviceGetViolationStatus(self, h: Any, policy: int) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetViolationStatus", policy)
        if policy not in gpu.violation_ns:
            raise nvml_error(real.NVML_ERROR_NOT_SUPPORTED)
        return real.c_nvmlViolationTime_t(referenceTime=0, violationTime=gpu.violation_ns[policy])

    def nvmlDeviceGetUtilizationRates(self, h: Any) -> Any:
        util = self._gpu(h, "nvmlDeviceGetUtilizationRates").utilization
        return real.c_nvmlUtilization_t(gpu=util[0], memory=util[1])

    def nvmlDeviceGetMemoryInfo(self, h: Any, version: int | None = None) -> Any:
        if not version:
            gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo")
            free = gpu.memory_total - gpu.memory_reserved - gpu.memory_used
            return real.c_nvmlMemory_t(total=gpu.memory_total, free=free, used=gpu.memory_used)
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo_v2")
        if version != real.nvmlMemory_v2:
            raise nvml_error(real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        return real.c_nvmlMemory_v2_t(
            version=version, total=gpu.memory_total, reserved=gpu.memory_reserved,
            free=gpu.memory_total - gpu.memory_reserved - gpu.memory_used, used=gpu.memory_used,
        )

    # -- memory health ------------------------------------------------------------------------

    def nvmlDeviceGetTotalEccErrors(self, h: Any, error_type: int, counter_type: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetTotalEccErrors", error_type, counter_type)
        return gpu.ecc.get((error_type, counter_type), 0)

    def nvmlDeviceGetRetiredPages(self, h: Any, cause: int) -> list[int]:
        gpu = self._gpu(h, "nvmlDeviceGetRetiredPages", cause)
        return list(gpu.retired_pages.get(cause, []))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetRetiredPagesPendingStatus").retired_pages_pending

    def nvmlDeviceGetRemappedRows(self, h: Any) -> tuple[int, int, int, int]:
        return self._gpu(h, "nvmlDeviceGetRemappedRows").remapped_rows

    def nvmlDeviceGetUnrepairableMemoryFlag_v1(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetUnrepairableMemoryFlag_v1").unrepairable_memory

    # -- interconnect -------------------------------------------------------------------------

    def nvmlDeviceGetNvLinkState(self, h: Any, link: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetNvLinkState", link)
        if link >= len(gpu.nvlink_states):
            raise nvml_error(gpu.nvlink_end_error)
        return gpu.nvlink_states[link]

    def nvmlDeviceGetNvLinkErrorCounter(self, h: Any, link: int, counter: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetNvLinkErrorCounter", link, counter)
        if link >= len(gpu.nvlink_states):
            raise nvml_error(real.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.nvlink_errors.get((link, counter), 0)

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrPcieLinkGeneration").pcie_gen[0]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetMaxPcieLinkGeneration").pcie_gen[1]

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrPcieLinkWidth").pcie_width[0]

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetMaxPcieLinkWidth").pcie_width[1]

    def nvmlDeviceGetPcieReplayCounter(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetPcieReplayCounter").pcie_replay

    def nvmlDeviceGetGpuFabricInfoV(self, h: Any, info_ref: Any) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetGpuFabricInfoV")
        info = info_ref._obj  # ctypes.byref(struct), as the C function takes a pointer
        fab = gpu.fabric
        if fab is None:
            raise nvml_error(real.NVML_ERROR_NOT_SUPPORTED)
        if info.version not in fab.versions:
            raise nvml_error(real.NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        info.clusterUuid[:] = list(fab.cluster_uuid)
        info.status, info.cliqueId, info.state = fab.status, fab.clique_id, fab.state
        info.healthMask = fab.health_mask
        if info.version == real.nvmlGpuFabricInfo_v3:
            info.healthSummary = fab.health_summary
        return int(real.NVML_SUCCESS)

    def nvmlDeviceGetFieldValues(self, h: Any, field_ids: Sequence[Any]) -> Any:
        gpu = self._gpu(h, "nvmlDeviceGetFieldValues")
        values = (real.c_nvmlFieldValue_t * len(field_ids))()
        scripted_values, returns = gpu.field_values, gpu.field_returns
        success, unsupported = real.NVML_SUCCESS, real.NVML_ERROR_NOT_SUPPORTED
        for i, field_id in enumerate(field_ids):  # pynvml accepts ids or (id, scope) pairs
            fid, scope = field_id if isinstance(field_id, tuple) else (field_id, 0)
            scripted = scripted_values.get((fid, scope))
            ret = returns.get((fid, scope), returns.get(fid)) if returns else None
            if ret is None:
                ret = success if scripted is not None else unsupported
            if ret != success or scripted is None:  # a failed field holds junk: check nvmlReturn
                _PACK[_ULL].pack_into(values, i * _SIZE, fid, scope, 0, 1, _ULL, ret, GARBAGE)
            else:  # written as the C library does: straight into the array's memory
                value_type, value = scripted
                _PACK[value_type].pack_into(values, i * _SIZE, fid, scope, 0, 1, value_type,
                                            ret, value)
        return values

# c_nvmlFieldValue_t: fieldId, scopeId, timestamp, latencyUsec, valueType, nvmlReturn, value
_SIZE = ctypes.sizeof(real.c_nvmlFieldValue_t)
assert _SIZE == 40 and real.c_nvmlFieldValue_t.value.offset == 32, "pynvml layout changed"
_ULL = real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
_PACK = {
    value_type: struct.Struct("=IIqqII" + code)
    for value_type, code in (
        (real.NVML_VALUE_TYPE_DOUBLE, "d"),
        (real.NVML_VALUE_TYPE_UNSIGNED_INT, "I4x"),
        (real.NVML_VALUE_TYPE_UNSIGNED_LONG, "Q"),
        (real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, "Q"),
        (real.NVML_VALUE_TYPE_SIGNED_LONG_LONG, "q"),
        (real.NVML_VALUE_TYPE_SIGNED_INT, "i4x"),
        (real.NVML_VALUE_TYPE_UNSIGNED_SHORT, "H6x"),
    )
}


def load_captured(path: str) -> FakeNvml:
    """A FakeNvml replaying a capture written by `tests/fakes/capture_nvml.py` on a real GPU."""
    from tests.fakes.capture_nvml import fake_from_capture, read_capture

    return fake_from_capture(read_capture(path))
