"""Suite-wide test configuration: the `gpu` marker skips cleanly where NVML has no GPU."""

from __future__ import annotations

import functools

import pytest


@functools.cache
def _real_gpu_reason() -> str | None:
    """None when a real NVML with at least one GPU answers; otherwise why not."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as exc:
        return f"no usable NVML here ({type(exc).__name__}: {exc})"
    try:
        if pynvml.nvmlDeviceGetCount() < 1:
            return "NVML answers but shows no GPU"
    finally:
        pynvml.nvmlShutdown()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    reason = _real_gpu_reason()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=f"gpu test: {reason}")
    for item in gpu_items:
        item.add_marker(skip)
