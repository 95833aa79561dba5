"""The controller's Prometheus metrics, on a registry of its own, served on --metrics-listen.

Names (fixed by the design): gpufleet_nodes{state}, gpufleet_ingest_messages_total{kind},
gpufleet_ingest_latency_seconds (receive -> committed), gpufleet_agent_streams,
gpufleet_ingest_queue_depth, gpufleet_directives_total{kind}; plus
gpufleet_ingest_rejected_total{code} and gpufleet_ingest_batch_messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
)


class _NodeStates(Collector):
    """gpufleet_nodes{state}, read from the service's in-memory state cache at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Mapping[str, int]] = dict

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "gpufleet_nodes", "Nodes by lifecycle state.", labels=["state"]
        )
        for state, count in sorted(self.source().items()):
            family.add_metric([state], count)
        yield family


class ControllerMetrics:
    """Every controller metric; one instance per controller (tests make their own)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.ingest_messages = Counter(
            "gpufleet_ingest_messages_total",
            "Agent messages accepted by kind (hello, report, xid, rank_exit, progress, result, "
            "replay).",
            ["kind"], registry=r,
        )
        self.ingest_latency = Histogram(
            "gpufleet_ingest_latency_seconds",
            "Seconds from reading a durable message off its stream to its commit.",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.agent_streams = Gauge(
            "gpufleet_agent_streams", "Live agent streams.", registry=r
        )
        self.queue_depth = Gauge(
            "gpufleet_ingest_queue_depth", "Messages waiting for the store writer.", registry=r
        )
        self.directives = Counter(
            "gpufleet_directives_total", "Directives sent to agents by kind.", ["kind"],
            registry=r,
        )
        self.rejected = Counter(
            "gpufleet_ingest_rejected_total", "Agent streams ended for a protocol violation, "
            "by gRPC status.", ["code"], registry=r,
        )
        self.batch_messages = Histogram(
            "gpufleet_ingest_batch_messages", "Messages per committed store batch.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000), registry=r,
        )
        self._states = _NodeStates()
        r.register(self._states)

    def bind_node_states(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Where gpufleet_nodes reads its counts from."""
        self._states.source = source

    def bind_queue_depth(self, source: Callable[[], int]) -> None:
        """Where gpufleet_ingest_queue_depth reads the queue length from."""
        self.queue_depth.set_function(lambda: float(source()))


@dataclass
class MetricsServer:
    """A running /metrics HTTP endpoint."""

    host: str
    port: int
    _server: WSGIServer
    _thread: Thread

    def close(self) -> None:
        """Stop serving and join the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(metrics: ControllerMetrics, host: str, port: int) -> MetricsServer:
    """Serve `metrics` on http://host:port/metrics (port 0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(host, int(server.server_port), server, thread)
