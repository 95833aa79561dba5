"""Prometheus alert rules for gpufleet, as data; `python -m dashboards.build` writes them to
`deploy/prometheus/gpufleet-rules.yml` (tested with `promtool check rules` and
`promtool test rules`).

Conventions: scrape jobs are named `gpufleet-agent` and `gpufleet-controller` (as in
`deploy/prometheus/prometheus.yml`); every alert has `severity` (critical | warning) and the
annotations `summary`, `description` and `runbook` (what to do, in a few steps). `for:`
durations keep flapping signals quiet; event-like signals (a fatal XID) fire at once and stay
firing for their look-back window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dashboards.queries import on_node

AGENT_JOB = "gpufleet-agent"
CONTROLLER_JOB = "gpufleet-controller"
#: XIDs that need a GPU reset or a reboot (DCGM "FAIL always" plus 64): the agent's checks
#: judge them critical; see the NVIDIA XID catalog.
FATAL_XIDS = ("48", "64", "74", "79", "95", "119", "120", "140")
XID_LOOKBACK = "15m"
DRAINED_FRACTION = 0.10
OUT_OF_SERVICE = "drained|suspect|repair|unreachable"
RESTART_LOOP_WINDOW = "30m"
RESTART_LOOP_MIN = 3
SWEEP_STALL_S = 300
INGEST_P99_S = 0.25


@dataclass(frozen=True, slots=True)
class Alert:
    """One alerting rule."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    runbook: str


@dataclass(frozen=True, slots=True)
class Group:
    """A rule group (evaluated together, at the global evaluation interval)."""

    name: str
    rules: tuple[Alert, ...]


_NODE_DASH = "the gpufleet / Node detail dashboard"
_SHOW = "`gpufleet node show {{ $labels.hostname }}`"
_fatal = "|".join(FATAL_XIDS)
_xid_sel = f'gpufleet_xid_events_total{{xid=~"{_fatal}"}}'

NODE_RULES = Group("gpufleet-node", (
    Alert(
        "GpufleetNodeCritical",
        on_node('max by (instance, job) (gpufleet_node_verdict{verdict="critical"})', None)
        + " == 1",
        "2m", "critical",
        "Node {{ $labels.hostname }} is critical",
        "The gpufleet agent on {{ $labels.hostname }} ({{ $labels.instance }}) has judged the "
        "node critical for 2 minutes.",
        f"1. {_SHOW} lists the findings, their evidence and the action each asks for. "
        f"2. The controller drains nodes with fatal findings itself; otherwise drain with "
        "`gpufleet drain {{ $labels.hostname }} --reason '...'` before the next job lands. "
        f"3. Follow the findings' action (reset GPU, reboot, service), then undrain; the node "
        f"must pass preflight again. Graphs: {_NODE_DASH}.",
    ),
    Alert(
        "GpufleetFatalXid",
        # A counter's first sample already carries its first XID, which increase() cannot
        # see: a series that did not exist XID_LOOKBACK ago counts as new events too.
        on_node(f"max by (instance, gpu, xid) (increase({_xid_sel}[{XID_LOOKBACK}]) > 0 or "
                f"({_xid_sel} unless {_xid_sel} offset {XID_LOOKBACK}))", None),
        "0s", "critical",
        "Fatal XID {{ $labels.xid }} on {{ $labels.hostname }} GPU {{ $labels.gpu }}",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} reported XID {{ $labels.xid }}, which "
        "needs a GPU reset or a node reboot; the GPU's results since then are suspect. The "
        f"alert stays firing for {XID_LOOKBACK} after the last such XID.",
        f"1. {_SHOW}: the finding names the XID and the action (reset_gpu, reboot_node). "
        "2. If the node runs a job, the supervisor restarts it from its last checkpoint on a "
        "spare; check `gpufleet events --node {{ $labels.hostname }}`. "
        "3. Reset the GPU or reboot as the action says; repeated XID 48/64/95 on one GPU means "
        "service (RMA after a field diagnostic).",
    ),
    Alert(
        "GpufleetGpuFallenOffBus",
        on_node("gpufleet_gpu_lost", None) + " == 1",
        "1m", "critical",
        "GPU {{ $labels.gpu }} on {{ $labels.hostname }} has fallen off the bus",
        "NVML reports GPU {{ $labels.gpu }} on {{ $labels.hostname }} as lost (XID 79 class): "
        "it no longer answers on PCIe.",
        "1. The node cannot run GPU work: drain it (the controller normally already has). "
        "2. Reboot the node. 3. If the GPU is lost again: re-seat it, check power and cooling, "
        "run a field diagnostic; service if it persists.",
    ),
    Alert(
        "GpufleetAgentDown",
        f'up{{job="{AGENT_JOB}"}} == 0',
        "3m", "warning",
        "gpufleet agent {{ $labels.instance }} is not being scraped",
        "Prometheus has failed to scrape the gpufleet agent at {{ $labels.instance }} for "
        "3 minutes: the node's GPU health is not visible.",
        "1. Is the node up? (ping, BMC). 2. `systemctl status gpufleet-agent` and "
        "`journalctl -u gpufleet-agent` on the node. 3. Check the agent's --metrics-listen "
        "address and any firewall between Prometheus and :9400.",
    ),
    Alert(
        "GpufleetAgentSweepsStalled",
        on_node(f"time() - gpufleet_last_sweep_timestamp_seconds > {SWEEP_STALL_S}", None),
        "2m", "warning",
        "Agent on {{ $labels.hostname }} has not swept for {{ $value | humanizeDuration }}",
        "The agent answers scrapes but its last judged sweep is older than "
        f"{SWEEP_STALL_S} s: a hung NVML call or a stuck collector; the metrics shown are stale.",
        "1. `journalctl -u gpufleet-agent` on {{ $labels.hostname }} for NVML errors or "
        "timeouts. 2. `nvidia-smi` on the node: a hang there means a driver problem (drain and "
        "reboot). 3. Otherwise restart the agent.",
    ),
    Alert(
        "GpufleetNodesUnreachable",
        'gpufleet_nodes{state="unreachable"} > 0',
        "2m", "warning",
        "{{ $value }} node(s) unreachable by the controller",
        "The controller has not heard from {{ $value }} node(s) within its heartbeat timeout "
        "and holds them unreachable; they get no work until they return and pass preflight.",
        "1. `gpufleet nodes --json` and look for state unreachable. 2. For each: is the node "
        "up, is gpufleet-agent running, can it reach the controller (TLS, firewall)? "
        "3. A node that returns lands in registered and is re-tested by preflight.",
    ),
    Alert(
        "GpufleetControllerDown",
        f'up{{job="{CONTROLLER_JOB}"}} == 0',
        "2m", "critical",
        "gpufleet controller {{ $labels.instance }} is not being scraped",
        "Prometheus has failed to scrape the controller for 2 minutes. Agents keep spooling "
        "reports, but no drains, preflights or run restarts happen while it is down.",
        "1. `systemctl status gpufleet-controller` and its journal on the management host. "
        "2. Check its database file's disk. 3. Restart it; agents replay their spools.",
    ),
))  # fmt: skip

FLEET_RULES = Group("gpufleet-fleet", (
    Alert(
        "GpufleetDrainedFractionHigh",
        f'sum(gpufleet_nodes{{state=~"{OUT_OF_SERVICE}"}}) / '
        f'sum(gpufleet_nodes{{state!="retired"}}) > {DRAINED_FRACTION}',
        "15m", "warning",
        "{{ $value | humanizePercentage }} of the fleet is out of service",
        f"More than {DRAINED_FRACTION:.0%} of non-retired nodes have been drained, suspect, in "
        "repair or unreachable for 15 minutes: capacity for runs and hot spares is short.",
        "1. The Fleet overview dashboard's table lists the nodes and their reasons. "
        "2. Look for a common cause (one rack, one driver version, one switch). "
        "3. Move repaired nodes back (`gpufleet undrain`) and get hardware serviced.",
    ),
    Alert(
        "GpufleetIngestSlow",
        "histogram_quantile(0.99, sum by (le) "
        "(rate(gpufleet_ingest_latency_seconds_bucket[5m]))) > " + str(INGEST_P99_S),
        "10m", "warning",
        "Controller ingest p99 latency is {{ $value | humanizeDuration }}",
        f"The 99th percentile from receiving an agent message to committing it has been above "
        f"{INGEST_P99_S} s for 10 minutes; fault-to-action times grow with it.",
        "1. Check gpufleet_ingest_queue_depth and the controller's CPU. 2. Check the database "
        "disk's latency. 3. Raise --ingest-batch or move the database to faster storage.",
    ),
))  # fmt: skip

RUN_RULES = Group("gpufleet-run", (
    Alert(
        "GpufleetRunRestartLoop",
        # increase() extrapolates to the window's edges (2 restarts can read 2.07): compare
        # with N - 0.5 so N restarts fire and N - 1 stay quiet.
        f"increase(gpufleet_run_restarts_total[{RESTART_LOOP_WINDOW}]) > {RESTART_LOOP_MIN - 0.5}",
        "1m", "critical",
        "Run {{ $labels.run }} is restarting in a loop",
        f"Run {{{{ $labels.run }}}} restarted at least {RESTART_LOOP_MIN} times in "
        f"{RESTART_LOOP_WINDOW}: a fault the supervisor cannot route around (a bad checkpoint, "
        "a code error, or a node that keeps failing without being drained).",
        "1. `gpufleet events --since 1h` for the run's rank exits and their causes. "
        "2. The same rank or node every time: drain that node. The same step every time: "
        "suspect the checkpoint or the code. 3. Stop the run rather than burn the budget.",
    ),
))  # fmt: skip

BURNIN_RULES = Group("gpufleet-burnin", (
    Alert(
        "GpufleetBurninOutlier",
        "gpufleet_burnin_outlier == 1",
        "1m", "warning",
        "Burn-in outlier: {{ $labels.node }} in cohort {{ $labels.cohort }}",
        "The latest burn-in of {{ $labels.node }} is below its SKU floor or below its cohort's "
        "median by more than k·MAD: it would pace every collective of a run it joins.",
        "1. The gpufleet / Burn-in dashboard shows its busbw against the cohort median. "
        "2. Check its NVLink and IB rails on the Node detail dashboard (links down, error "
        "rates, a rail at a lower rate). 3. Keep it out of runs until a re-test passes.",
    ),
))  # fmt: skip

GROUPS: tuple[Group, ...] = (NODE_RULES, FLEET_RULES, RUN_RULES, BURNIN_RULES)
ALERTS: tuple[Alert, ...] = tuple(a for g in GROUPS for a in g.rules)

HEADER = (
    "# gpufleet alert rules. GENERATED by `python -m dashboards.build` from\n"
    "# dashboards/alerts.py: edit that file, not this one.\n"
    "# Assumes the scrape jobs `gpufleet-agent` and `gpufleet-controller`.\n"
)


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON string syntax is valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def render_rules(groups: tuple[Group, ...] = GROUPS) -> str:
    """The rule file, in Prometheus' YAML format."""
    lines = [HEADER.rstrip("\n"), "groups:"]
    for group in groups:
        lines += [f"  - name: {group.name}", "    rules:"]
        for a in group.rules:
            lines += [f"      - alert: {a.name}", "        expr: |-"]
            lines += [f"          {line}" for line in a.expr.splitlines()]
            lines += [
                f"        for: {a.for_}",
                "        labels:",
                f"          severity: {a.severity}",
                "        annotations:",
                f"          summary: {_q(a.summary)}",
                f"          description: {_q(a.description)}",
                f"          runbook: {_q(a.runbook)}",
            ]
    return "\n".join(lines) + "\n"
