"""Turning NVML failures into data: exceptions and per-field return codes become `Unavailable`.

The helpers receive the `pynvml` module object (or a fake of it); they never import it.
Mapping, per the design: NotSupported (and FunctionNotFound for optional newer APIs) means "not
applicable here"; GpuIsLost means the GPU fell off the bus; anything else is an ERROR.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.model import ReadStatus, Unavailable

NvmlModule = Any  # the `pynvml` module or a stand-in exposing the same names (untyped upstream)


@dataclass(frozen=True, slots=True)
class NvmlCodes:
    """The `NVML_*` return codes the backend branches on, read once from the module."""

    success: int
    invalid_argument: int
    not_supported: int
    timeout: int
    function_not_found: int
    gpu_is_lost: int
    argument_version_mismatch: int

    @classmethod
    def of(cls, nvml: NvmlModule) -> NvmlCodes:
        """Read the codes from a pynvml-like module."""
        return cls(
            success=int(nvml.NVML_SUCCESS),
            invalid_argument=int(nvml.NVML_ERROR_INVALID_ARGUMENT),
            not_supported=int(nvml.NVML_ERROR_NOT_SUPPORTED),
            timeout=int(nvml.NVML_ERROR_TIMEOUT),
            function_not_found=int(nvml.NVML_ERROR_FUNCTION_NOT_FOUND),
            gpu_is_lost=int(nvml.NVML_ERROR_GPU_IS_LOST),
            argument_version_mismatch=int(nvml.NVML_ERROR_ARGUMENT_VERSION_MISMATCH),
        )


def error_code(exc: BaseException, nvml: NvmlModule) -> int | None:
    """The `NVML_ERROR_*` code of an `NVMLError`, or None for any other exception."""
    if isinstance(exc, nvml.NVMLError):
        value = getattr(exc, "value", None)
        return value if isinstance(value, int) else None
    return None


def error_text(code: int, nvml: NvmlModule) -> str:
    """Human text for an NVML return code (never raises)."""
    try:
        return f"{nvml.NVMLError(code)} (code {code})"
    except Exception:  # an odd binding: still give the number
        return f"NVML error code {code}"


def unavailable_for_code(
    code: int, nvml: NvmlModule, codes: NvmlCodes, *, optional_api: bool = False, where: str = ""
) -> Unavailable:
    """Map an NVML return code (from an exception or a field value) to `Unavailable`."""
    prefix = f"{where}: " if where else ""
    detail = prefix + error_text(code, nvml)
    if code == codes.not_supported or (optional_api and code == codes.function_not_found):
        return Unavailable(ReadStatus.NOT_SUPPORTED, detail)
    if code == codes.gpu_is_lost:
        return Unavailable(ReadStatus.GPU_LOST, detail)
    return Unavailable(ReadStatus.ERROR, detail)


def classify(
    exc: BaseException,
    nvml: NvmlModule,
    codes: NvmlCodes,
    *,
    optional_api: bool = False,
    where: str = "",
) -> Unavailable:
    """Map any exception raised by a read to `Unavailable` (non-NVML exceptions are ERRORs)."""
    code = error_code(exc, nvml)
    if code is None:
        prefix = f"{where}: " if where else ""
        return Unavailable(ReadStatus.ERROR, f"{prefix}{type(exc).__name__}: {exc}")
    return unavailable_for_code(code, nvml, codes, optional_api=optional_api, where=where)
