"""`NvmlXidWatcher`: a daemon thread waiting on an NVML event set and queueing `XidEvent`s.

It registers, per GPU, the event types that matter masked by what the GPU supports (registering
an unsupported type raises NotSupported), waits with a short timeout (`NVMLError_Timeout` is the
normal "nothing happened"), and pushes events into a bounded queue that `drain()` empties.
Failures never kill the thread silently: they are counted, and it backs off and carries on,
recreating the event set after repeated failures.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from agent.gpu.nvml_errors import NvmlCodes, NvmlModule, classify, error_code
from agent.model import XidEvent
from gpufleet_common.clock import Clock

# NVML event type constant -> (xid it stands for, or None for "the event data is the xid")
EVENT_XIDS: tuple[tuple[str, int | None], ...] = (
    ("nvmlEventTypeXidCriticalError", None),
    ("nvmlEventTypeDoubleBitEccError", 48),  # GPU_ECC_DBE
    ("nvmlEventTypeGpuRecoveryAction", 154),  # GPU_RECOVERY_ACTION_CHANGED; data = new action
)

_RECREATE_AFTER = 5  # consecutive wait failures before the event set is rebuilt


def _address(handle: Any) -> int | None:
    try:
        value = ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return None
    return value if isinstance(value, int) else None


class NvmlXidWatcher:
    """XIDs from NVML events, gathered by a background thread (`start`, `drain`, `stop`)."""

    def __init__(
        self,
        nvml: NvmlModule,
        devices: Sequence[tuple[int, Any]],
        clock: Clock,
        *,
        wait_ms: int = 500,
        max_queue: int = 1024,
        max_backoff_s: float = 5.0,
        bus_ids: Mapping[int, str] | None = None,
    ) -> None:
        self._n = nvml
        self._bus_ids = dict(bus_ids or {})
        self._codes = NvmlCodes.of(nvml)
        self._devices = list(devices)
        self._clock = clock
        self._wait_ms = wait_ms
        self._max_queue = max_queue
        self._max_backoff_s = max_backoff_s
        self._by_address = {
            addr: index for index, h in self._devices if (addr := _address(h)) is not None
        }
        self._xid_of_type: dict[int, int | None] = {
            int(getattr(nvml, name)): xid for name, xid in EVENT_XIDS if hasattr(nvml, name)
        }
        self._wanted = 0
        for event_type in self._xid_of_type:
            self._wanted |= event_type
        self._lock = threading.Lock()
        self._queue: list[XidEvent] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.registered: dict[int, int] = {}  # GPU index -> registered event mask
        self.errors = 0
        self.dropped = 0
        self.last_error = ""

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the daemon thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nvml-xid", daemon=True)
            self._thread.start()

    def drain(self) -> list[XidEvent]:
        """Events queued since the last call, oldest first; never blocks on NVML."""
        with self._lock:
            events, self._queue = self._queue, []
        return events

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask the thread to end and join it; True if it ended within `timeout_s`."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _fail(self, exc: BaseException, where: str) -> None:
        self.errors += 1
        self.last_error = classify(exc, self._n, self._codes, where=where).detail

    def _setup(self) -> Any:
        es = self._n.nvmlEventSetCreate()
        self.registered = {}
        for index, handle in self._devices:
            try:
                supported = int(self._n.nvmlDeviceGetSupportedEventTypes(handle))
            except Exception as exc:
                if error_code(exc, self._n) != self._codes.not_supported:
                    self._fail(exc, f"GPU {index} supported events")
                continue
            mask = self._wanted & supported
            if not mask:
                continue
            try:
                self._n.nvmlDeviceRegisterEvents(handle, mask, es)
            except Exception as exc:
                self._fail(exc, f"GPU {index} register events")
                continue
            self.registered[index] = mask
        return es

    def _free(self, es: Any) -> None:
        try:
            self._n.nvmlEventSetFree(es)
        except Exception as exc:
            self._fail(exc, "event set free")

    def _run(self) -> None:
        backoff = initial = min(0.05, self._max_backoff_s)
        es: Any = None
        failures = 0
        try:
            while not self._stop.is_set():
                if es is None:
                    try:
                        es = self._setup()
                    except Exception as exc:
                        self._fail(exc, "event set create")
                        self._stop.wait(backoff)
                        backoff = min(backoff * 2, self._max_backoff_s)
                        continue
                    if not self.registered:
                        return  # nothing on this node can deliver the events we want
                try:
                    data = self._n.nvmlEventSetWait_v2(es, self._wait_ms)
                except Exception as exc:
                    if error_code(exc, self._n) == self._codes.timeout:
                        failures, backoff = 0, initial
                        continue
                    self._fail(exc, "event wait")
                    failures += 1
                    if failures >= _RECREATE_AFTER:
                        self._free(es)
                        es, failures = None, 0
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)
                    continue
                failures, backoff = 0, initial
                self._push(data)
        finally:
            if es is not None:
                self._free(es)

    def _gpu_of(self, device: Any) -> int | None:
        addr = _address(device)
        if addr is not None and addr in self._by_address:
            return self._by_address[addr]
        try:
            return int(self._n.nvmlDeviceGetIndex(device))
        except Exception as exc:
            self._fail(exc, "event device index")
            return None

    def _push(self, data: Any) -> None:
        event_type = int(data.eventType)
        if event_type not in self._xid_of_type:
            return  # a type we did not ask for
        xid = self._xid_of_type[event_type]
        value = int(data.eventData)
        message = f"NVML event 0x{event_type:x}" + ("" if xid is None else f", data {value}")
        gpu = self._gpu_of(data.device)
        event = XidEvent(
            xid=value if xid is None else xid,
            timestamp=self._clock.time(),
            gpu=gpu,
            pci_bus_id=self._bus_ids.get(gpu) if gpu is not None else None,
            source="nvml",
            message=message,
        )
        with self._lock:
            if len(self._queue) >= self._max_queue:
                self.dropped += 1  # keep the earliest: the root cause comes first
                return
            self._queue.append(event)
