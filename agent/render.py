"""Pure presentation of a NodeReport: the design.md JSON shape and rich tables for humans."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table

from agent.model import GpuSample, NodeReport, Severity

_STYLE = {Severity.OK: "green", Severity.WARN: "yellow", Severity.UNKNOWN: "magenta",
          Severity.CRITICAL: "bold red"}


def gpu_json(gpu: GpuSample) -> dict[str, Any]:
    """One GPU's identity and headline readings (None where unreadable)."""
    return {
        "index": gpu.index, "uuid": gpu.uuid, "name": gpu.name, "serial": gpu.serial,
        "pci_bus_id": gpu.pci_bus_id, "vbios_version": gpu.vbios_version,
        "temperature_c": gpu.temperature_c, "power_w": gpu.power_w,
        "ecc_dbe_volatile": gpu.ecc_dbe_volatile, "lost": gpu.lost,
        "not_supported": sorted(k for k, u in gpu.unavailable.items()
                                if u.status.value == "not_supported"),
    }


def report_json(
    report: NodeReport, window_s: float = 0.0, xid_lookback_s: float | None = None
) -> dict[str, Any]:
    """`gpufleet-agent check --json`: design.md's shape, with a few extra keys
    (`xid_lookback_s`: how far back the kernel log was read; null when it was not)."""
    sample = report.sample
    return {
        "hostname": sample.hostname,
        "verdict": report.verdict.value,
        "action": report.action.value,
        "checked_at": sample.timestamp,
        "window_s": window_s,
        "xid_lookback_s": xid_lookback_s,
        "driver_version": sample.system.driver_version,
        "cuda_driver_version": sample.system.cuda_driver_version,
        "gpus": [gpu_json(g) for g in sample.gpus],
        "findings": [f.to_json() for f in report.findings],
    }


def _fmt(value: float | int | None, unit: str = "") -> str:
    if value is None:
        return "—"
    return f"{value:.0f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def report_tables(report: NodeReport) -> Group:
    """A GPU table and a findings table, coloured by severity."""
    worst: dict[int | None, Severity] = {}
    for f in report.findings:
        if f.severity.rank > worst.get(f.gpu, Severity.OK).rank:
            worst[f.gpu] = f.severity
    gpus = Table(title=f"{report.sample.hostname}: {report.verdict.value.upper()}",
                 title_style=_STYLE[report.verdict])
    for col in ("GPU", "name", "bus id", "temp", "power", "DBE", "status"):
        gpus.add_column(col)
    for g in report.sample.gpus:
        sev = Severity.CRITICAL if g.lost else worst.get(g.index, Severity.OK)
        gpus.add_row(str(g.index), g.name or "—", g.pci_bus_id or "—", _fmt(g.temperature_c, " °C"),
                     _fmt(g.power_w, " W"), _fmt(g.ecc_dbe_volatile),
                     f"[{_STYLE[sev]}]{'lost' if g.lost else sev.value}[/]")
    findings = Table(title="findings" if report.findings else "no findings")
    for col in ("severity", "check", "GPU", "action", "message"):
        findings.add_column(col)
    for f in sorted(report.findings, key=lambda f: (-f.severity.rank, f.gpu or -1)):
        findings.add_row(f"[{_STYLE[f.severity]}]{f.severity.value}[/]", f.check,
                         "node" if f.gpu is None else str(f.gpu), f.action.value, f.message)
    return Group(gpus, findings)
