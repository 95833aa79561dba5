"""Open this node's GPU backend and host reader: real NVML, or the simulator (`--simulate`)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.collect import HostReader
from agent.gpu.backend import GpuBackend
from agent.policy import Policy
from gpufleet_common.clock import Clock

if TYPE_CHECKING:
    from agent.gpu.xid import KernelLogXidScanner


@dataclass
class NodeSources:
    """What a sweep reads from, and what the node calls itself."""

    name: str
    backend: GpuBackend
    host_reader: HostReader
    sku: str | None = None
    nvlink_domain: str = ""
    rack: str = ""
    kernel_log: KernelLogXidScanner | None = None  # its `history` after a lookback


def open_sources(simulate: str | None, node: str | None, clock: Clock,
                 nvml: Any = None, policy: Policy | None = None, *,
                 kernel_log: str | None = None, xid_lookback_s: float = 0.0) -> NodeSources:
    """Build the sources. Raises ValueError with every problem of a bad simulation spec.
    `nvml` replaces the `pynvml` module (the test seam); None loads the real one. XIDs are also
    read from `kernel_log` (default /dev/kmsg, none with an injected `nvml`), from its end, or
    first from `xid_lookback_s` seconds back when > 0 (the one-shot check; never the daemon)."""
    if simulate:
        from agent.gpu.simulated import build_simulated_backend, parse_sim_spec

        spec = parse_sim_spec(simulate)
        sim = build_simulated_backend(spec, node, clock)
        topo = sim.topology()
        return NodeSources(
            name=sim.name, backend=sim, host_reader=lambda _gpus: sim.host_sample(),
            sku=spec.sku, nvlink_domain=topo.nvlink_domain, rack=topo.rack,
        )
    from agent.gpu.nvml_backend import NvmlBackend
    from agent.gpu.xid import KMSG_PATH, KernelLogXidScanner
    from agent.host.reader import HostReader as SysHostReader

    path = kernel_log or (None if nvml is not None else KMSG_PATH)
    scanner = None if path is None else KernelLogXidScanner(
        clock, path, lookback_s=xid_lookback_s if xid_lookback_s > 0 else None)
    backend = NvmlBackend(nvml=nvml, clock=clock, kernel_log=scanner)
    return NodeSources(name=node or socket.gethostname(), backend=backend,
                       host_reader=SysHostReader(required_services=_services(backend, policy)),
                       kernel_log=scanner)


def _services(backend: GpuBackend, policy: Policy | None) -> tuple[str, ...]:
    """Services the policy requires on this node: node-wide plus its SKU's."""
    if policy is None:
        return ()
    devices = backend.devices()
    sku = policy.sku_for(devices[0].sample().name) if devices else policy.sku or "default"
    return tuple(dict.fromkeys([*policy.host.required_services,
                                *policy.for_sku(sku).required_services]))
