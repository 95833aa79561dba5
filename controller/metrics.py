"""The controller's Prometheus metrics, on a registry of its own, served on --metrics-listen.

Names (fixed by the design): gpufleet_nodes{state}, gpufleet_ingest_messages_total{kind},
gpufleet_ingest_latency_seconds (receive -> committed), gpufleet_agent_streams,
gpufleet_ingest_queue_depth, gpufleet_directives_total{kind}; plus
gpufleet_ingest_rejected_total{code} and gpufleet_ingest_batch_messages.

Read from the controller's state when scraped (`metrics_scrape.ScrapeTime`, bound with the
`bind_*` methods; unbound, they are empty): gpufleet_node_state_info{node,state,reason} and
gpufleet_node_heartbeat_age_seconds{node} (`metrics_nodes`, from the FleetService);
gpufleet_run_step, gpufleet_run_step_duration_seconds, gpufleet_run_restarts_total,
gpufleet_run_time_seconds{run,kind}, gpufleet_run_goodput_ratio and
gpufleet_run_step_energy_joules, all labelled `run` (`metrics_runs`, from the supervisor);
gpufleet_burnin_busbw_bytes_per_second{node,cohort}, gpufleet_burnin_outlier{node,cohort} and
gpufleet_burnin_timestamp_seconds{node} (`metrics_burnin`, the latest judged burn-ins).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.metrics_burnin import BurninSample, BurninSync
from controller.metrics_nodes import AgesSource, NodeSync, StatesSource
from controller.metrics_runs import STEP_BUCKETS, RunFamilies, RunsSource, RunSync
from controller.metrics_scrape import ScrapeTime

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
        self._add_node_families(r)
        self._add_run_families(r)
        self._add_burnin_families(r)

    # Scrape-time families: unregistered metric objects, served by a registered ScrapeTime.

    def _add_node_families(self, r: CollectorRegistry) -> None:
        self.node_state_info = Gauge(
            "gpufleet_node_state_info", "Each node's lifecycle state and the reason recorded "
            "with it (value 1).", ["node", "state", "reason"], registry=None)
        self.node_heartbeat_age = Gauge(
            "gpufleet_node_heartbeat_age_seconds", "Seconds since the controller last heard "
            "from the node's agent.", ["node"], registry=None)
        self._nodes = NodeSync(self.node_state_info, self.node_heartbeat_age)
        self._register(r, self._nodes, self.node_state_info, self.node_heartbeat_age)

    def _add_run_families(self, r: CollectorRegistry) -> None:
        self.run_step = Gauge(
            "gpufleet_run_step", "Latest completed training step.", ["run"], registry=None)
        self.run_step_duration = Histogram(
            "gpufleet_run_step_duration_seconds", "Wall time of each completed step (rank 0's "
            "report).", ["run"], buckets=STEP_BUCKETS, registry=None)
        self.run_restarts = Counter(
            "gpufleet_run_restarts_total", "Restarts of the run from a checkpoint (every rank "
            "relaunched).", ["run"], registry=None)
        self.run_time = Gauge(
            "gpufleet_run_time_seconds", "Wall time of the run so far by the goodput ledger's "
            "kind (productive, recomputed, detection, restart, other); sums to the wall time.",
            ["run", "kind"], registry=None)
        self.run_goodput = Gauge(
            "gpufleet_run_goodput_ratio", "Productive share of the run's wall time so far.",
            ["run"], registry=None)
        self.run_step_energy = Gauge(
            "gpufleet_run_step_energy_joules", "GPU energy per productive step, over the "
            "run's GPUs.", ["run"], registry=None)
        families = RunFamilies(self.run_step, self.run_step_duration, self.run_restarts,
                               self.run_time, self.run_goodput, self.run_step_energy)
        self._runs = RunSync(families)
        self._register(r, self._runs, self.run_step, self.run_step_duration,
                       self.run_restarts, self.run_time, self.run_goodput, self.run_step_energy)

    def _add_burnin_families(self, r: CollectorRegistry) -> None:
        self.burnin_busbw = Gauge(
            "gpufleet_burnin_busbw_bytes_per_second", "All-reduce bus bandwidth of the node's "
            "latest burn-in at its largest size.", ["node", "cohort"], registry=None)
        self.burnin_outlier = Gauge(
            "gpufleet_burnin_outlier", "1 when the judge flagged the node's latest burn-in, "
            "else 0.", ["node", "cohort"], registry=None)
        self.burnin_timestamp = Gauge(
            "gpufleet_burnin_timestamp_seconds", "When the node's latest burn-in finished.",
            ["node"], registry=None)
        self._burnins = BurninSync(self.burnin_busbw, self.burnin_outlier,
                                   self.burnin_timestamp)
        self._register(r, self._burnins, self.burnin_busbw, self.burnin_outlier,
                       self.burnin_timestamp)

    @staticmethod
    def _register(r: CollectorRegistry, refresh: Callable[[], None],
                  *families: Gauge | Counter | Histogram) -> None:
        collector = ScrapeTime(*families)
        collector.refresh = refresh
        r.register(collector)

    def bind_node_states(self, source: Callable[[], Mapping[str, int]]) -> None:
        """Where gpufleet_nodes reads its counts from."""
        self._states.source = source

    def bind_queue_depth(self, source: Callable[[], int]) -> None:
        """Where gpufleet_ingest_queue_depth reads the queue length from."""
        self.queue_depth.set_function(lambda: float(source()))

    def bind_node_details(self, states: StatesSource, ages: AgesSource) -> None:
        """Where the node families read each node's (state, reason) and heartbeat age."""
        self._nodes.states, self._nodes.ages = states, ages

    def bind_runs(self, runs: RunsSource, now: Callable[[], float], *,
                  retain_s: float | None = None, ledger_every_s: float | None = None) -> None:
        """Where the run families read the supervisor's runs, and the clock they age by.

        A run stays exported `retain_s` after it ended; a running run's ledger is rebuilt at
        most every `ledger_every_s` (defaults in `controller.metrics_runs`)."""
        self._runs.runs, self._runs.now = runs, now
        if retain_s is not None:
            self._runs.retain_s = retain_s
        if ledger_every_s is not None:
            self._runs.ledger_every_s = ledger_every_s

    def bind_burnins(self, latest: Callable[[], Mapping[str, BurninSample]]) -> None:
        """Where the burn-in families read each node's latest judged burn-in."""
        self._burnins.latest = latest


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
