"""`NvmlBackend`: the real GPU backend, on `pynvml` (nvidia-ml-py). The only importer of pynvml.

The module object is injectable (`NvmlBackend(nvml=fake, clock=...)`), so tests run this exact
code on a fake. Nothing here raises out of `system()`, `devices()` or `sample()`: a failed
`nvmlInit` leaves a backend with no devices whose `system()` says why (`unavailable["nvml"]`),
and init is retried every `init_retry_s`. XIDs come from NVML events (a daemon thread) and from
the kernel log, merged and de-duplicated by `drain_xid_events()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from agent.gpu.backend import GpuDevice
from agent.gpu.nvml_device import NvmlDevice
from agent.gpu.nvml_errors import NvmlCodes, NvmlModule, classify
from agent.gpu.nvml_readers import cuda_version_text, text
from agent.gpu.xid import (
    KMSG_PATH,
    KernelLogXidScanner,
    NvmlXidWatcher,
    dedup_xid_events,
    normalize_pci_bus_id,
)
from agent.model import ReadStatus, SystemInfo, Unavailable, XidEvent
from gpufleet_common.clock import Clock, SystemClock

__all__ = ["NvmlBackend", "NvmlDevice"]

_SYSTEM_FIELDS = ("driver_version", "cuda_driver_version", "nvml_version", "gpu_count")


def _load_pynvml() -> NvmlModule:
    import pynvml

    return pynvml


class NvmlBackend:
    """All GPUs of this node through NVML, plus XID events. Implements `GpuBackend`."""

    def __init__(
        self,
        nvml: NvmlModule | None = None,
        clock: Clock | None = None,
        *,
        watch_xid: bool = True,
        kernel_log: str | KernelLogXidScanner | None = KMSG_PATH,
        kernel_log_from_start: bool = False,
        xid_wait_ms: int = 500,
        dedup_window_s: float = 5.0,
        init_retry_s: float = 30.0,
        reprobe_s: float = 300.0,
    ) -> None:
        self._n = nvml if nvml is not None else _load_pynvml()
        self._codes = NvmlCodes.of(self._n)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._watch_xid = watch_xid
        self._xid_wait_ms = xid_wait_ms
        self._dedup_window_s = dedup_window_s
        self._init_retry_s = init_retry_s
        self._reprobe_s = reprobe_s
        self._initialized = False
        self._init_error: Unavailable | None = None
        self._count_error: Unavailable | None = None
        self._ready = False
        self._closed = False
        self._last_attempt: float | None = None
        self._devices: list[NvmlDevice] = []
        self._static_system: dict[str, str] = {}
        self._watcher: NvmlXidWatcher | None = None
        self._unmatched: list[XidEvent] = []
        self._scanner = (  # a scanner given (e.g. with a lookback) is owned and closed here
            KernelLogXidScanner(self._clock, kernel_log, from_start=kernel_log_from_start)
            if isinstance(kernel_log, str)
            else kernel_log
        )
        self._ensure_ready()

    # -- life cycle -------------------------------------------------------------------------

    def _ensure_ready(self) -> None:
        """Init NVML and open the devices; on failure retry at most every `init_retry_s`."""
        if self._ready or self._closed:
            return
        now = self._clock.monotonic()
        if self._last_attempt is not None and now - self._last_attempt < self._init_retry_s:
            return
        self._last_attempt = now
        if not self._initialized:
            try:
                self._n.nvmlInit()
            except Exception as exc:
                why = classify(exc, self._n, self._codes, where="nvmlInit")
                self._init_error = Unavailable(ReadStatus.ERROR, why.detail)
                return
            self._initialized, self._init_error = True, None
        try:
            count = int(self._n.nvmlDeviceGetCount())
        except Exception as exc:
            self._count_error = classify(exc, self._n, self._codes, where="nvmlDeviceGetCount")
            return
        self._count_error = None
        self._devices = [self._open_device(i) for i in range(count)]
        self._ready = True
        self._start_xid_sources()

    def _open_device(self, index: int) -> NvmlDevice:
        try:
            handle = self._n.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            why = classify(exc, self._n, self._codes, where="handle")
            return NvmlDevice(index, self._n, self._clock, handle_error=why,
                              reprobe_s=self._reprobe_s)
        return NvmlDevice(index, self._n, self._clock, handle=handle, reprobe_s=self._reprobe_s)

    def _bus_ids(self) -> dict[int, str]:
        buses: dict[int, str] = {}
        for dev in self._devices:
            if dev.handle is None:
                continue
            try:
                bus = normalize_pci_bus_id(text(self._n.nvmlDeviceGetPciInfo_v3(dev.handle).busId))
            except Exception:
                continue  # events of this GPU will carry no bus id; not worth failing over
            if bus is not None:
                buses[dev.index] = bus
        return buses

    def _start_xid_sources(self) -> None:
        buses = self._bus_ids()
        if self._scanner is not None:
            self._scanner.set_bus_map({bus: index for index, bus in buses.items()})
        if not self._watch_xid:
            return
        handles = [(d.index, d.handle) for d in self._devices if d.handle is not None]
        self._watcher = NvmlXidWatcher(self._n, handles, self._clock, wait_ms=self._xid_wait_ms,
                                       bus_ids=buses)
        self._watcher.start()

    def close(self) -> None:
        """Stop the XID thread, close the kernel log and shut NVML down. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._watcher is not None:
            self._watcher.stop(timeout_s=max(2.0, 2 * self._xid_wait_ms / 1000))
        if self._scanner is not None:
            self._scanner.close()
        if self._initialized:
            with contextlib.suppress(Exception):  # shutting down anyway
                self._n.nvmlShutdown()
            self._initialized = False

    # -- GpuBackend -------------------------------------------------------------------------

    def system(self) -> SystemInfo:
        """Driver/CUDA/NVML versions and device count; never raises."""
        self._ensure_ready()
        if not self._initialized:
            why = self._init_error or Unavailable(ReadStatus.ERROR, "NVML not initialised")
            return SystemInfo(unavailable={"nvml": why, **dict.fromkeys(_SYSTEM_FIELDS, why)})
        values: dict[str, Any] = dict(self._static_system)
        unavailable: dict[str, Unavailable] = {}
        reads: tuple[tuple[str, Callable[[], str]], ...] = (
            ("driver_version", lambda: text(self._n.nvmlSystemGetDriverVersion())),
            ("cuda_driver_version", self._cuda_version),
            ("nvml_version", lambda: text(self._n.nvmlSystemGetNVMLVersion())),
        )
        for name, read in reads:
            if name in values:
                continue
            try:
                values[name] = self._static_system[name] = read()
            except Exception as exc:
                unavailable[name] = classify(exc, self._n, self._codes)
        try:
            values["gpu_count"] = int(self._n.nvmlDeviceGetCount())
        except Exception as exc:
            unavailable["gpu_count"] = classify(exc, self._n, self._codes)
        return SystemInfo(**values, unavailable=unavailable)

    def _cuda_version(self) -> str:
        try:
            version = self._n.nvmlSystemGetCudaDriverVersion_v2()
        except self._n.NVMLError as exc:
            if getattr(exc, "value", None) != self._codes.function_not_found:
                raise
            version = self._n.nvmlSystemGetCudaDriverVersion()
        return cuda_version_text(int(version))

    def devices(self) -> list[GpuDevice]:
        """The node's GPUs in index order; [] while NVML is not up."""
        self._ensure_ready()
        devices: list[GpuDevice] = list(self._devices)
        return devices

    def drain_xid_events(self) -> list[XidEvent]:
        """XIDs since the last call from NVML events and the kernel log, de-duplicated."""
        self._ensure_ready()
        events = self._watcher.drain() if self._watcher is not None else []
        if self._scanner is not None:
            events.extend(self._scanner.poll())
        kept, unmatched = dedup_xid_events(events, self._unmatched, self._dedup_window_s)
        horizon = self._clock.time() - 2 * self._dedup_window_s
        self._unmatched = [e for e in unmatched if e.timestamp >= horizon]
        return sorted(kept, key=lambda e: e.timestamp)

    def xid_source_status(self) -> dict[str, int | bool | str]:
        """Counters of the XID sources, for logs and metrics (non-fatal conditions)."""
        status: dict[str, int | bool | str] = {"nvml_events": self._watcher is not None}
        if self._watcher is not None:
            status.update(nvml_running=self._watcher.running, nvml_errors=self._watcher.errors,
                          nvml_dropped=self._watcher.dropped,
                          nvml_last_error=self._watcher.last_error)
        status["kernel_log"] = self._scanner is not None and self._scanner.available
        if self._scanner is not None:
            status.update(kernel_log_errors=self._scanner.errors,
                          kernel_log_overruns=self._scanner.overruns,
                          kernel_log_last_error=self._scanner.last_error)
        return status
