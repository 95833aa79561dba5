"""Collect, then judge: one `NodeReport` per sweep, remembering the previous sample for rates."""

from __future__ import annotations

from agent.checks.evaluate import evaluate
from agent.collect import HostReader, collect_node
from agent.gpu.backend import GpuBackend
from agent.model import NodeReport, NodeSample
from agent.policy import Policy
from gpufleet_common.clock import Clock


class Sweeper:
    """Owns the sweep cadence's memory (the previous sample); everything else is passed in."""

    def __init__(self, hostname: str, backend: GpuBackend, clock: Clock, policy: Policy,
                 host_reader: HostReader | None = None) -> None:
        self.hostname = hostname
        self.backend = backend
        self.clock = clock
        self.policy = policy
        self.host_reader = host_reader
        self.previous: NodeSample | None = None

    def collect(self) -> NodeSample:
        """One sample, not judged and not remembered."""
        return collect_node(self.hostname, self.backend, self.clock, self.host_reader)

    def sweep(self) -> NodeReport:
        """Sample and judge against the previous sample (rates over the sweep interval)."""
        sample = self.collect()
        report = NodeReport(sample, evaluate(sample, self.previous, self.policy))
        self.previous = sample
        return report

    def observe(self, window_s: float) -> NodeReport:
        """Sample, watch for `window_s`, sample again, judge the window: rates are computed
        over it and every XID that arrived at either end of it counts."""
        if window_s <= 0:
            return NodeReport(sample := self.collect(), evaluate(sample, None, self.policy))
        first = self.collect()
        self.clock.sleep(window_s)
        last = self.collect()
        merged = NodeSample(
            hostname=last.hostname, timestamp=last.timestamp, monotonic=last.monotonic,
            system=last.system, gpus=last.gpus, host=last.host,
            xid_events=first.xid_events + last.xid_events,
        )
        self.previous = merged
        return NodeReport(merged, evaluate(merged, first, self.policy))
