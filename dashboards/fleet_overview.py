"""Fleet overview: lifecycle states, nodes out of service and why, findings, XIDs, lost GPUs,
agent liveness and the controller's ingest path."""

from __future__ import annotations

from typing import Any

from dashboards.grafana import (
    Board,
    Q,
    bargauge_panel,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.queries import RATE, on_node

UID = "gpufleet-fleet-overview"
OUT_OF_SERVICE = "drained|suspect|repair|unreachable"
FATAL_XIDS = "48|64|74|79|95|119|120|140"
_RED_AT_1 = ((None, "green"), (1.0, "red"))


def build() -> dict[str, Any]:
    """The dashboard JSON."""
    b = Board(
        "gpufleet / Fleet overview",
        UID,
        "Node lifecycle, health findings, XIDs and agent/controller liveness across the fleet.",
        ["fleet"],
    )
    _lifecycle(b)
    _out_of_service(b)
    _findings(b)
    _xids(b)
    _liveness(b)
    return b.build()


def _lifecycle(b: Board) -> None:
    b.row("Lifecycle")
    b.add(stat_panel(
        "Nodes by lifecycle state", "The controller's count of nodes in each state.",
        [Q("sum by (state) (gpufleet_nodes)", "{{state}}")], name_and_value=True,
    ), 16, 5)  # fmt: skip
    b.add(stat_panel(
        "Out of service",
        f"Share of non-retired nodes that are {OUT_OF_SERVICE.replace('|', ', ')}.",
        [Q(f'sum(gpufleet_nodes{{state=~"{OUT_OF_SERVICE}"}}) / '
           'sum(gpufleet_nodes{state!="retired"})')],
        "percentunit", thresholds=((None, "green"), (0.05, "orange"), (0.1, "red")),
    ), 4, 5)  # fmt: skip
    b.add(stat_panel(
        "Agents scraped up", "Agent targets Prometheus scraped successfully / all agent targets.",
        [Q('sum(up{job="gpufleet-agent"})', "up"), Q('count(up{job="gpufleet-agent"})', "all")],
        name_and_value=True,
    ), 4, 5)  # fmt: skip
    b.add(timeseries_panel(
        "Nodes by lifecycle state over time", "",
        [Q("sum by (state) (gpufleet_nodes)", "{{state}}")], stacked=True, min_value=0,
    ), 24, 8)  # fmt: skip


def _out_of_service(b: Board) -> None:
    b.row("Drained and suspect nodes")
    b.add(table_panel(
        "Nodes out of service, with reasons",
        "Each node the controller holds drained, suspect, in repair or unreachable, with the "
        "reason it recorded (operator drain reason, the finding that made it suspect, ...).",
        [Q(f'gpufleet_node_state_info{{state=~"{OUT_OF_SERVICE}"}}')],
    ), 12, 9)  # fmt: skip
    b.add(table_panel(
        "Current non-OK findings by node",
        "Every warn/critical/unknown finding the agents report now, with the action it asks for.",
        [Q(on_node("gpufleet_finding_info", None))],
    ), 12, 9)  # fmt: skip


def _findings(b: Board) -> None:
    b.row("Findings")
    b.add(stat_panel(
        "Nodes by verdict", "Each agent's current verdict.",
        [Q("sum by (verdict) (gpufleet_node_verdict)", "{{verdict}}")], name_and_value=True,
    ), 8, 6)  # fmt: skip
    b.add(timeseries_panel(
        "Findings by severity", "",
        [Q('sum by (severity) (gpufleet_findings{severity!="ok"})', "{{severity}}")],
        stacked=True, min_value=0,
    ), 8, 6)  # fmt: skip
    b.add(bargauge_panel(
        "Findings by check", "Non-OK findings now, by check.",
        [Q('sort_desc(sum by (check) (gpufleet_findings{severity!="ok"}))', "{{check}}")],
        thresholds=((None, "orange"),),
    ), 8, 6)  # fmt: skip


def _xids(b: Board) -> None:
    b.row("XIDs and lost GPUs")
    fatal = on_node(f'gpufleet_xid_events_total{{xid=~"{FATAL_XIDS}"}}', None)
    b.add(stat_panel(
        "GPUs fallen off the bus", "GPUs NVML reports lost (XID 79 class); reboot the node.",
        [Q("sum(gpufleet_gpu_lost) or vector(0)")], thresholds=_RED_AT_1,
    ), 4, 8)  # fmt: skip
    b.add(timeseries_panel(
        "XID events per 5 minutes", "By XID code, fleet-wide.",
        [Q("sum by (xid) (increase(gpufleet_xid_events_total[5m]))", "XID {{xid}}")],
        stacked=True, min_value=0,
    ), 10, 8)  # fmt: skip
    b.add(table_panel(
        "Fatal XIDs by node and GPU",
        f"Counts since agent start of XIDs that need a reset or reboot ({FATAL_XIDS}).",
        [Q(f"sum by (hostname, gpu, xid) ({fatal})")],
    ), 10, 8)  # fmt: skip
    b.add(table_panel(
        "Lost GPUs", "Node and GPU index of every GPU NVML reports lost.",
        [Q(f"{on_node('gpufleet_gpu_lost', None)} == 1")],
    ), 24, 6)  # fmt: skip


def _liveness(b: Board) -> None:
    b.row("Agents, heartbeats and the controller")
    latency = f"rate(gpufleet_ingest_latency_seconds_bucket[{RATE}])"
    sweep_age = on_node("time() - gpufleet_last_sweep_timestamp_seconds", None)
    b.add(timeseries_panel(
        "Agent streams vs nodes in service",
        "Live gRPC streams from agents, against nodes the controller expects to hear from.",
        [Q("gpufleet_agent_streams", "streams"),
         Q('sum(gpufleet_nodes{state!~"retired|unreachable"})', "nodes expected")],
        min_value=0,
    ), 8, 8)  # fmt: skip
    b.add(timeseries_panel(
        "Oldest sweeps", "Seconds since each agent's last judged sweep (10 oldest).",
        [Q(f"topk(10, max by (hostname) ({sweep_age}))", "{{hostname}}")], "s", min_value=0,
    ), 8, 8)  # fmt: skip
    b.add(table_panel(
        "Heartbeat age (controller view)",
        "Seconds since the controller last heard from each node, longest first.",
        [Q("topk(20, gpufleet_node_heartbeat_age_seconds)")], "s",
    ), 8, 8)  # fmt: skip
    b.add(timeseries_panel(
        "Ingest latency", "Receive-to-commit latency of agent messages.",
        [Q(f"histogram_quantile({q}, sum by (le) ({latency}))", f"p{int(q * 100)}")
         for q in (0.5, 0.99)], "s", min_value=0,
    ), 8, 8)  # fmt: skip
    b.add(timeseries_panel(
        "Ingested messages", "Agent messages accepted per second, by kind.",
        [Q(f"sum by (kind) (rate(gpufleet_ingest_messages_total[{RATE}]))", "{{kind}}")],
        "ops", stacked=True, min_value=0,
    ), 8, 8)  # fmt: skip
    b.add(timeseries_panel(
        "Ingest queue, directives and rejected streams", "",
        [Q("gpufleet_ingest_queue_depth", "queue depth"),
         Q(f"sum by (kind) (rate(gpufleet_directives_total[{RATE}]))", "directives {{kind}}/s"),
         Q(f"sum by (code) (rate(gpufleet_ingest_rejected_total[{RATE}]))", "rejected {{code}}/s")],
        min_value=0,
    ), 8, 8)  # fmt: skip
