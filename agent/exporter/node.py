"""gpufleet's node-level families: agent identity, verdict, findings, sweep timing, XID totals."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from prometheus_client.core import Metric

from agent.exporter.families import Family, Kind, Spec, label
from agent.exporter.xid import XidSnapshot
from agent.model import Action, NodeReport, Severity

AGENT_INFO_LABELS = ("version", "hostname", "driver_version", "cuda_driver_version", "nvml_version")
AGENT_INFO = Spec(
    "gpufleet_agent_info", Kind.GAUGE, "The agent and the node's driver stack (value 1).",
    AGENT_INFO_LABELS,
)  # fmt: skip
NODE_VERDICT = Spec(
    "gpufleet_node_verdict", Kind.GAUGE,
    "The node's verdict, one-hot over ok|warn|unknown|critical.", ("verdict",),
)  # fmt: skip
NODE_ACTION = Spec(
    "gpufleet_node_action", Kind.GAUGE,
    "The most escalated action the findings recommend, one-hot.", ("action",),
)  # fmt: skip
FINDINGS = Spec(
    "gpufleet_findings", Kind.GAUGE,
    "Current findings by check, severity and GPU (gpu is empty for node-level findings).",
    ("check", "severity", "gpu"),
)  # fmt: skip
FINDING_INFO = Spec(
    "gpufleet_finding_info", Kind.GAUGE,
    "One series per current non-OK finding, with the action it recommends (value 1).",
    ("check", "severity", "gpu", "action"),
)  # fmt: skip
GPU_COUNT = Spec("gpufleet_gpus", Kind.GAUGE, "GPUs the driver reports on this node.")
SWEEP_DURATION = Spec(
    "gpufleet_sweep_duration_seconds", Kind.GAUGE, "How long the last sweep and its checks took."
)
LAST_SWEEP = Spec(
    "gpufleet_last_sweep_timestamp_seconds", Kind.GAUGE,
    "Wall-clock time the last judged sweep started (alert on time() minus this).",
)  # fmt: skip
XID_EVENTS = Spec(
    "gpufleet_xid_events_total", Kind.COUNTER,
    "XID events seen since the agent started, per GPU and XID (gpu empty when unknown).",
    ("gpu", "xid"),
)  # fmt: skip
NODE_SPECS: tuple[Spec, ...] = (
    AGENT_INFO, NODE_VERDICT, NODE_ACTION, FINDINGS, FINDING_INFO, GPU_COUNT, SWEEP_DURATION,
    LAST_SWEEP, XID_EVENTS,
)  # fmt: skip


def agent_info(version: str, report: NodeReport | None, extra: Mapping[str, str]) -> Metric:
    """`gpufleet_agent_info`; before the first sweep only the version is known."""
    values = dict.fromkeys(AGENT_INFO_LABELS, "")
    values["version"] = version
    if report is not None:
        system = report.sample.system
        values["hostname"] = report.sample.hostname
        values["driver_version"] = label(system.driver_version)
        values["cuda_driver_version"] = label(system.cuda_driver_version)
        values["nvml_version"] = label(system.nvml_version)
    spec = Spec(AGENT_INFO.name, AGENT_INFO.kind, AGENT_INFO.help, (*AGENT_INFO_LABELS, *extra))
    family = Family(spec)
    family.add([*values.values(), *extra.values()], 1)
    return family.metric


def node_families(report: NodeReport, sweep_duration_s: float | None) -> list[Metric]:
    """Verdict, action, findings and sweep timing of one judged sweep."""
    verdict, action = Family(NODE_VERDICT), Family(NODE_ACTION)
    for severity in Severity:
        verdict.add([severity.value], severity is report.verdict)
    for act in Action:
        action.add([act.value], act is report.action)
    counts = Counter((f.check, f.severity.value, label(f.gpu)) for f in report.findings)
    findings = Family(FINDINGS)
    for key, count in sorted(counts.items()):
        findings.add(key, count)
    info = Family(FINDING_INFO)
    for f in report.findings:
        if f.severity is not Severity.OK:
            info.add([f.check, f.severity.value, label(f.gpu), f.action.value], 1)
    gpu_count, duration, last = Family(GPU_COUNT), Family(SWEEP_DURATION), Family(LAST_SWEEP)
    gpu_count.add([], report.sample.system.gpu_count)
    duration.add([], sweep_duration_s)
    last.add([], report.sample.timestamp)
    return [f.metric for f in (verdict, action, findings, info, gpu_count, duration, last)]


def xid_family(xids: XidSnapshot) -> Metric:
    """`gpufleet_xid_events_total` from the lifetime counts."""
    family = Family(XID_EVENTS)
    for (gpu, xid), count in sorted(xids.counts.items()):
        family.add([gpu, xid], count)
    return family.metric
