"""The GPU seam: what the agent needs from NVML (or the simulator), typed as Protocols.

`NvmlBackend` (agent/gpu/nvml_backend.py) is the only module that imports `pynvml`;
`SimulatedBackend` (agent/gpu/simulated.py) drives the demo, the controller's tests and the
benchmarks. Neither ever raises out of `sample()`: failed reads become `Unavailable` entries.
"""

from __future__ import annotations

from typing import Protocol

from agent.model import GpuSample, SystemInfo, XidEvent


class GpuDevice(Protocol):
    """One GPU."""

    @property
    def index(self) -> int:
        """NVML device index."""
        ...

    def sample(self) -> GpuSample:
        """Read everything about this GPU; never raises."""
        ...


class GpuBackend(Protocol):
    """All GPUs of one node, plus node-wide facts and XID events."""

    def system(self) -> SystemInfo:
        """Driver/CUDA/NVML versions and device count; never raises."""
        ...

    def devices(self) -> list[GpuDevice]:
        """The node's GPUs in index order (a GPU that cannot be opened still appears)."""
        ...

    def drain_xid_events(self) -> list[XidEvent]:
        """XIDs that arrived since the last call (from the waiter thread); never blocks."""
        ...

    def close(self) -> None:
        """Stop background threads and release the library."""
        ...
