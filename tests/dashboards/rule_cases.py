"""promtool unit-test cases for every alert: input series, and at chosen times which alerts
fire (with their labels and fully rendered annotations) or that none does.

`promtool_tests()` renders them into promtool's test-file format (JSON, which is YAML). The
expected annotations are the rule's own templates rendered here with the expected labels, so
promtool checks both when each alert fires and that its templates render as intended.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dashboards.alerts import ALERTS, Alert

AGENT = {"job": "gpufleet-agent"}
CONTROLLER = {"job": "gpufleet-controller", "instance": "ctl:9401"}
_BY_NAME = {a.name: a for a in ALERTS}


@dataclass(frozen=True)
class Fires:
    """One expected alert: its labels (besides alertname and severity) and the text that
    `{{ $value }}` (or `{{ $value | humanize... }}`) renders to, where the templates use it."""

    labels: Mapping[str, str]
    value: str = ""


@dataclass(frozen=True)
class Check:
    """At `at`, `alert` fires exactly `fires` (empty: stays quiet)."""

    at: str
    alert: str
    fires: Sequence[Fires] = ()


@dataclass(frozen=True)
class Case:
    """One promtool test: series (selector -> promtool values notation) and checks."""

    title: str
    series: Mapping[str, str]
    checks: Sequence[Check]
    interval: str = "1m"
    extra: Mapping[str, Any] = field(default_factory=dict)


def sel(metric: str, labels: Mapping[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{metric}{{{inner}}}"


def info(instance: str, hostname: str) -> str:
    return sel("gpufleet_agent_info", {**AGENT, "instance": instance, "hostname": hostname,
                                       "version": "0.1.0"})  # fmt: skip


def node(instance: str, hostname: str, **more: str) -> dict[str, str]:
    return {**AGENT, "instance": instance, "hostname": hostname, **more}


N1, N2 = "n1:9400", "n2:9400"
CASES: tuple[Case, ...] = (
    Case("node critical: sustained fires after 2m, flapping stays quiet", {
        sel("gpufleet_node_verdict", {**AGENT, "instance": N1, "verdict": "critical"}): "1x10",
        sel("gpufleet_node_verdict", {**AGENT, "instance": N2, "verdict": "critical"}):
            "0 1 0 1 0 1 0 1 0 1 0",
        info(N1, "n1"): "1x10", info(N2, "n2"): "1x10",
    }, [
        Check("1m", "GpufleetNodeCritical"),
        Check("5m", "GpufleetNodeCritical", [Fires(node(N1, "n1"))]),
    ]),
    Case("fatal XID: a new series fires at once, a non-fatal XID and an old count do not", {
        sel("gpufleet_xid_events_total", {**AGENT, "instance": N1, "gpu": "1", "xid": "79"}):
            "1x40",
        sel("gpufleet_xid_events_total", {**AGENT, "instance": N1, "gpu": "3", "xid": "48"}):
            "2x24 3x15",
        sel("gpufleet_xid_events_total", {**AGENT, "instance": N2, "gpu": "0", "xid": "31"}):
            "1+1x40",
        info(N1, "n1"): "1x40", info(N2, "n2"): "1x40",
    }, [
        Check("1m", "GpufleetFatalXid", [
            Fires({"instance": N1, "hostname": "n1", "gpu": "1", "xid": "79"}),
            Fires({"instance": N1, "hostname": "n1", "gpu": "3", "xid": "48"}),
        ]),
        Check("20m", "GpufleetFatalXid"),
        Check("26m", "GpufleetFatalXid", [
            Fires({"instance": N1, "hostname": "n1", "gpu": "3", "xid": "48"}),
        ]),
    ]),
    Case("GPU fallen off the bus: fires after 1m on the lost GPU only", {
        sel("gpufleet_gpu_lost", {**AGENT, "instance": N1, "gpu": "1"}): "0 0 1x10",
        sel("gpufleet_gpu_lost", {**AGENT, "instance": N1, "gpu": "2"}): "0x12",
        info(N1, "n1"): "1x12",
    }, [
        Check("2m", "GpufleetGpuFallenOffBus"),
        Check("4m", "GpufleetGpuFallenOffBus", [Fires(node(N1, "n1", gpu="1"))]),
    ]),
    Case("agent down: 3m of failed scrapes fire, flapping scrapes do not", {
        sel("up", {**AGENT, "instance": N1}): "1 1 0x10",
        sel("up", {**AGENT, "instance": N2}): "1 0 1 0 1 0 1 0 1 0 1 0",
        sel("up", CONTROLLER): "1x12",
    }, [
        Check("3m", "GpufleetAgentDown"),
        Check("6m", "GpufleetAgentDown", [Fires({**AGENT, "instance": N1})]),
        Check("6m", "GpufleetControllerDown"),
    ]),
    Case("sweeps stalled: a sweep 300 s old is not yet stale; 2m past that it fires", {
        sel("gpufleet_last_sweep_timestamp_seconds", {**AGENT, "instance": N1}): "0+60x5 300x15",
        sel("gpufleet_last_sweep_timestamp_seconds", {**AGENT, "instance": N2}): "0+60x20",
        info(N1, "n1"): "1x20", info(N2, "n2"): "1x20",
    }, [
        Check("10m", "GpufleetAgentSweepsStalled"),
        Check("14m", "GpufleetAgentSweepsStalled", [Fires(node(N1, "n1"), "9m 0s")]),
    ]),
    Case("controller sees nodes unreachable for 2m", {
        sel("gpufleet_nodes", {**CONTROLLER, "state": "unreachable"}): "0 0 1x10",
        sel("gpufleet_nodes", {**CONTROLLER, "state": "ready"}): "7x12",
    }, [
        Check("3m", "GpufleetNodesUnreachable"),
        Check("5m", "GpufleetNodesUnreachable", [Fires({**CONTROLLER, "state": "unreachable"},
                                                       "1")]),
    ]),
    Case("controller down: fires after 2m", {
        sel("up", CONTROLLER): "1 0x10",
        sel("up", {**AGENT, "instance": N1}): "1x11",
    }, [
        Check("2m", "GpufleetControllerDown"),
        Check("4m", "GpufleetControllerDown", [Fires(CONTROLLER)]),
        Check("4m", "GpufleetAgentDown"),
    ]),
    Case("drained fraction: 1 of 9 in service is over 10 % (retired nodes do not count)", {
        sel("gpufleet_nodes", {**CONTROLLER, "state": "ready"}): "8x40",
        sel("gpufleet_nodes", {**CONTROLLER, "state": "drained"}): "0x5 1x35",
        sel("gpufleet_nodes", {**CONTROLLER, "state": "retired"}): "5x40",
    }, [
        Check("5m", "GpufleetDrainedFractionHigh"),
        Check("20m", "GpufleetDrainedFractionHigh"),
        Check("22m", "GpufleetDrainedFractionHigh", [Fires({}, "11.11%")]),
    ]),
    Case("ingest p99 above 250 ms for 10m", {
        sel("gpufleet_ingest_latency_seconds_bucket", {**CONTROLLER, "le": "0.1"}):
            "0+100x20 2000x30",
        sel("gpufleet_ingest_latency_seconds_bucket", {**CONTROLLER, "le": "0.5"}): "0+100x50",
        sel("gpufleet_ingest_latency_seconds_bucket", {**CONTROLLER, "le": "+Inf"}): "0+100x50",
    }, [
        Check("19m", "GpufleetIngestSlow"),
        Check("30m", "GpufleetIngestSlow"),
        Check("40m", "GpufleetIngestSlow", [Fires({}, "496ms")]),
    ]),
    Case("run restart loop: 3 restarts in 30m fire, 2 do not", {
        sel("gpufleet_run_restarts_total", {**CONTROLLER, "run": "r1"}): "0 0 1 2 3x30",
        sel("gpufleet_run_restarts_total", {**CONTROLLER, "run": "r2"}): "0x10 1x20 2x20",
    }, [
        Check("4m", "GpufleetRunRestartLoop"),
        Check("6m", "GpufleetRunRestartLoop", [Fires({**CONTROLLER, "run": "r1"})]),
        Check("40m", "GpufleetRunRestartLoop"),
    ]),
    Case("burn-in outlier: the flagged node only, after 1m", {
        sel("gpufleet_burnin_outlier", {**CONTROLLER, "node": "n3", "cohort": "h100_sxm/8"}):
            "0 0 1x10",
        sel("gpufleet_burnin_outlier", {**CONTROLLER, "node": "n4", "cohort": "h100_sxm/8"}):
            "0x12",
    }, [
        Check("2m", "GpufleetBurninOutlier"),
        Check("4m", "GpufleetBurninOutlier", [Fires({**CONTROLLER, "node": "n3",
                                                     "cohort": "h100_sxm/8"})]),
    ]),
)  # fmt: skip

_LABEL = re.compile(r"\{\{\s*\$labels\.(\w+)\s*\}\}")
_VALUE = re.compile(r"\{\{\s*\$value(?:\s*\|\s*\w+)?\s*\}\}")


def render(template: str, labels: Mapping[str, str], value: str) -> str:
    """Render the subset of Go templates the rules use: $labels.X and $value (humanized)."""
    text = _LABEL.sub(lambda m: labels.get(m.group(1), ""), template)
    if _VALUE.search(text) and not value:
        raise ValueError(f"the template uses $value; give Fires(value=...): {template!r}")
    text = _VALUE.sub(value, text)
    if "{{" in text:
        raise ValueError(f"template construct not rendered here: {template!r}")
    return text


def expected(alert: Alert, fires: Fires) -> dict[str, Any]:
    labels = {**fires.labels, "severity": alert.severity}
    all_labels = {**labels, "alertname": alert.name}
    return {
        "exp_labels": labels,
        "exp_annotations": {
            key: render(text, all_labels, fires.value)
            for key, text in (("summary", alert.summary), ("description", alert.description),
                              ("runbook", alert.runbook))
        },
    }  # fmt: skip


def promtool_tests(rule_file: str, cases: Sequence[Case] = CASES) -> dict[str, Any]:
    """A promtool test file (as data) for `cases` against `rule_file`."""
    tests = []
    for case in cases:
        checks = []
        for check in case.checks:
            alert = _BY_NAME[check.alert]
            checks.append({
                "eval_time": check.at,
                "alertname": check.alert,
                "exp_alerts": [expected(alert, f) for f in check.fires],
            })  # fmt: skip
        tests.append({
            "name": case.title,
            "interval": case.interval,
            "input_series": [{"series": s, "values": v} for s, v in case.series.items()],
            "alert_rule_test": checks,
            **case.extra,
        })  # fmt: skip
    return {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests}
