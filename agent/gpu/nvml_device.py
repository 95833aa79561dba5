"""`NvmlDevice`: one GPU read through NVML, one `GpuSample` per sweep, never an exception.

The sweep walks `SPECS` in order. A failed read becomes `Unavailable` for its fields; GpuIsLost
stops the sweep and marks every unread field GPU_LOST. Identity and firmware are cached once read
(they cannot change while the driver is loaded); NotSupported answers are remembered and asked
again after `reprobe_s`.
"""

from __future__ import annotations

from typing import Any

from agent.gpu.nvml_errors import NvmlCodes, NvmlModule, classify
from agent.gpu.nvml_fields import read_field_values
from agent.gpu.nvml_links import read_nvlinks
from agent.gpu.nvml_readers import SIMPLE_SPECS, DeviceState, ReadContext, ReadSpec
from agent.model import GpuSample, ReadStatus, Unavailable
from gpufleet_common.clock import Clock

SPECS: tuple[ReadSpec, ...] = (
    *SIMPLE_SPECS,
    ReadSpec("nvlinks", ("nvlinks",), read_nvlinks),  # before "fields": it learns the link count
    ReadSpec("fields", ("memory_temp_c", "recovery_action", "nvlink5_counters"), read_field_values),
)
SAMPLE_FIELDS: tuple[str, ...] = tuple(f for spec in SPECS for f in spec.fields)


class NvmlDevice:
    """One GPU. `handle` may be None when it could not be obtained: it is retried each sweep."""

    def __init__(
        self,
        index: int,
        nvml: NvmlModule,
        clock: Clock,
        *,
        handle: Any = None,
        handle_error: Unavailable | None = None,
        reprobe_s: float = 300.0,
    ) -> None:
        self._index = index
        self._n = nvml
        self._codes = NvmlCodes.of(nvml)
        self._clock = clock
        self._handle = handle
        self._handle_error = handle_error
        self._state = DeviceState(reprobe_s=reprobe_s)
        self._static_values: dict[str, Any] = {}
        self._static_unavailable: dict[str, Unavailable] = {}
        self._static_done: set[str] = set()

    @property
    def index(self) -> int:
        """NVML device index."""
        return self._index

    @property
    def handle(self) -> Any:
        """The NVML handle, or None if it could not be obtained yet."""
        return self._handle

    def sample(self) -> GpuSample:
        """Read everything about this GPU; never raises."""
        try:
            return self._sample()
        except Exception as exc:  # a bug, not an NVML failure: still data, never a crash
            why = Unavailable(ReadStatus.ERROR, f"sweep failed: {type(exc).__name__}: {exc}")
            return GpuSample(index=self._index, unavailable={"sample": why})

    def _ensure_handle(self) -> Unavailable | None:
        if self._handle is not None:
            return None
        try:
            self._handle = self._n.nvmlDeviceGetHandleByIndex(self._index)
        except Exception as exc:
            self._handle_error = classify(exc, self._n, self._codes, where="handle")
            return self._handle_error
        self._handle_error = None
        return None

    def _sample(self) -> GpuSample:
        values: dict[str, Any] = dict(self._static_values)
        unavailable: dict[str, Unavailable] = dict(self._static_unavailable)
        no_handle = self._ensure_handle()
        if no_handle is not None:
            for name in SAMPLE_FIELDS:
                if name not in values and name not in unavailable:
                    unavailable[name] = no_handle
            return GpuSample(index=self._index, **values, unavailable=unavailable)
        now = self._clock.monotonic()
        ctx = ReadContext(self._n, self._handle, self._codes, self._state, now, unavailable)
        lost: Unavailable | None = None
        for spec in SPECS:
            if lost is not None:
                for name in spec.fields:
                    if name not in values and name not in unavailable:
                        unavailable[name] = Unavailable(ReadStatus.GPU_LOST,
                                                        f"not read: {lost.detail}")
                continue
            if spec.key in self._static_done:
                continue
            lost = self._read(spec, ctx, values, unavailable)
        return GpuSample(index=self._index, **values, unavailable=unavailable)

    def _read(
        self,
        spec: ReadSpec,
        ctx: ReadContext,
        values: dict[str, Any],
        unavailable: dict[str, Unavailable],
    ) -> Unavailable | None:
        """Run one spec into `values`/`unavailable`; return a GPU_LOST entry if the GPU is gone."""
        cached = self._state.cached_unsupported(spec.key, ctx.now)
        if cached is not None:
            for name in spec.fields:
                unavailable[name] = cached
            return None
        before = len(unavailable)
        try:
            result = self._call(spec, ctx)
        except Exception as exc:
            why = classify(exc, self._n, self._codes, optional_api=spec.optional_api)
            for name in spec.fields:
                unavailable[name] = why
            if why.status is ReadStatus.NOT_SUPPORTED:
                if spec.static:
                    self._static_unavailable.update(dict.fromkeys(spec.fields, why))
                    self._static_done.add(spec.key)
                else:
                    self._state.remember_unsupported(spec.key, why, ctx.now)
            return why if why.status is ReadStatus.GPU_LOST else None
        clean = True
        for name, value in zip(spec.fields, result, strict=True):
            if isinstance(value, Unavailable):
                unavailable[name] = value
                clean = False
            else:
                values[name] = value
        if spec.static and clean:
            self._static_values.update((n, values[n]) for n in spec.fields)
            self._static_done.add(spec.key)
        if clean and len(unavailable) == before:
            return None
        return next((u for u in unavailable.values() if u.status is ReadStatus.GPU_LOST), None)

    def _call(self, spec: ReadSpec, ctx: ReadContext) -> tuple[object, ...]:
        """The spec's reader, switching to its fallback for good on FunctionNotFound."""
        if spec.fallback is not None and spec.key in self._state.use_fallback:
            return spec.fallback(ctx)
        try:
            return spec.read(ctx)
        except self._n.NVMLError as exc:
            code = getattr(exc, "value", None)
            old_driver = (self._codes.function_not_found, self._codes.argument_version_mismatch)
            if spec.fallback is None or code not in old_driver:
                raise
            self._state.use_fallback.add(spec.key)
            return spec.fallback(ctx)
