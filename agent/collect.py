"""One sweep of a node: read every GPU, the node-wide facts, new XIDs and the host.

The collector only calls backends; it never judges. A backend never raises out of `sample()`,
but the host reader is guarded here too, so a sweep always yields a `NodeSample`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agent.gpu.backend import GpuBackend
from agent.model import GpuSample, HostSample, NodeSample, ReadStatus, Unavailable
from gpufleet_common.clock import Clock

HostReader = Callable[[Sequence[GpuSample]], HostSample]
"""Reads host health; receives this sweep's GPU samples so it can map GPUs to NIC rails."""


def collect_node(
    hostname: str,
    backend: GpuBackend,
    clock: Clock,
    host_reader: HostReader | None = None,
) -> NodeSample:
    """Take one full sweep of the node."""
    started_wall = clock.time()
    started_mono = clock.monotonic()
    system = backend.system()
    gpus = tuple(device.sample() for device in backend.devices())
    xids = tuple(backend.drain_xid_events())
    host: HostSample | None = None
    if host_reader is not None:
        try:
            host = host_reader(gpus)
        except Exception as exc:  # a host read must never take the sweep down
            host = HostSample(unavailable={"host": Unavailable(ReadStatus.ERROR, repr(exc))})
    return NodeSample(
        hostname=hostname,
        timestamp=started_wall,
        monotonic=started_mono,
        system=system,
        gpus=gpus,
        xid_events=xids,
        host=host,
    )
