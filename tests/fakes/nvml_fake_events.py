"""NVML events for the fake: event sets, registration masked by supported types, waiting.

`FakeEvents` is mixed into `FakeNvml`; it delivers scripted events (`FakeGpu.pending_events`,
`inject_event`) through `nvmlEventSetWait_v2` with pynvml's types and its Timeout error.
"""

from __future__ import annotations

import collections
import ctypes
import threading
from dataclasses import dataclass, field
from typing import Any

import pynvml as real

from tests.fakes.nvml_fake_gpu import FakeGpu, nvml_error


@dataclass
class _EventSet:
    registered: dict[int, int] = field(default_factory=dict)  # GPU index -> mask
    queue: collections.deque[tuple[int, int, int]] = field(default_factory=collections.deque)
    freed: bool = False


class FakeEvents:
    """The event half of FakeNvml (needs its `_system`, `_gpu`, `_index_of`, `_handles`)."""

    gpus: list[FakeGpu]
    _handles: list[Any]

    def _init_events(self) -> None:
        self.event_wait_errors: list[int] = []  # codes nvmlEventSetWait_v2 raises first, FIFO
        self._cond = threading.Condition()
        self._sets: dict[int, _EventSet] = {}
        self._set_structs: list[Any] = []

    def _system(self, fn: str) -> None:
        raise NotImplementedError

    def _gpu(self, handle: Any, fn: str, *args: int) -> FakeGpu:
        raise NotImplementedError

    def _index_of(self, handle: Any) -> int:
        raise NotImplementedError

    def nvmlEventSetCreate(self) -> Any:
        self._system("nvmlEventSetCreate")
        struct = real.struct_c_nvmlEventSet_t()
        self._set_structs.append(struct)
        with self._cond:
            self._sets[ctypes.addressof(struct)] = _EventSet()
        return ctypes.pointer(struct)

    def _event_set(self, es: Any) -> _EventSet:
        found = self._sets.get(ctypes.cast(es, ctypes.c_void_p).value or 0)
        if found is None or found.freed:
            raise nvml_error(real.NVML_ERROR_INVALID_ARGUMENT)
        return found

    def nvmlDeviceGetSupportedEventTypes(self, h: Any) -> int:
        return self._gpu(h, "nvmlDeviceGetSupportedEventTypes").supported_events

    def nvmlDeviceRegisterEvents(self, h: Any, event_types: int, es: Any) -> None:
        gpu = self._gpu(h, "nvmlDeviceRegisterEvents")
        if event_types & ~gpu.supported_events:
            raise nvml_error(real.NVML_ERROR_NOT_SUPPORTED)
        index = self._index_of(h)
        with self._cond:
            target = self._event_set(es)
            target.registered[index] = target.registered.get(index, 0) | event_types
            keep = []
            for event_type, data in gpu.pending_events:
                if event_type & event_types:
                    target.queue.append((index, event_type, data))
                else:
                    keep.append((event_type, data))
            gpu.pending_events = keep
            self._cond.notify_all()

    def inject_event(self, index: int, event_type: int, data: int) -> None:
        """An event happens on GPU `index`: delivered to every set registered for its type."""
        with self._cond:
            delivered = False
            for es in self._sets.values():
                if not es.freed and es.registered.get(index, 0) & event_type:
                    es.queue.append((index, event_type, data))
                    delivered = True
            if not delivered:
                self.gpus[index].pending_events.append((event_type, data))
            self._cond.notify_all()

    def nvmlEventSetWait_v2(self, es: Any, timeout_ms: int) -> Any:
        self._system("nvmlEventSetWait_v2")
        with self._cond:
            if self.event_wait_errors:
                raise nvml_error(self.event_wait_errors.pop(0))
            target = self._event_set(es)
            if not self._cond.wait_for(lambda: bool(target.queue) or target.freed,
                                       timeout_ms / 1000):
                raise nvml_error(real.NVML_ERROR_TIMEOUT)
            if target.freed:
                raise nvml_error(real.NVML_ERROR_INVALID_ARGUMENT)
            index, event_type, data = target.queue.popleft()
        return real.c_nvmlEventData_t(device=self._handles[index], eventType=event_type,
                                      eventData=data, gpuInstanceId=0, computeInstanceId=0)

    def nvmlEventSetWait(self, es: Any, timeout_ms: int) -> Any:
        return self.nvmlEventSetWait_v2(es, timeout_ms)

    def nvmlEventSetFree(self, es: Any) -> None:
        self._system("nvmlEventSetFree")
        with self._cond:
            self._event_set(es).freed = True
            self._cond.notify_all()
