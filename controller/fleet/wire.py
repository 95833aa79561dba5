"""Conversions between the wire messages and the pure fleet types, both ways."""

from __future__ import annotations

from controller.fleet.model import (
    Evidence,
    EvidenceKind,
    GateFinding,
    GateReason,
    GateVerdict,
    NodeInventory,
    Severity,
)
from protos.gpufleet.v1 import fleet_pb2

_SEVERITY_FROM_WIRE: dict[int, Severity] = {
    fleet_pb2.SEVERITY_OK: Severity.OK,
    fleet_pb2.SEVERITY_WARN: Severity.WARN,
    fleet_pb2.SEVERITY_UNKNOWN: Severity.UNKNOWN,
    fleet_pb2.SEVERITY_CRITICAL: Severity.CRITICAL,
}
_SEVERITY_TO_WIRE: dict[Severity, fleet_pb2.Severity] = {
    Severity.OK: fleet_pb2.SEVERITY_OK,
    Severity.WARN: fleet_pb2.SEVERITY_WARN,
    Severity.UNKNOWN: fleet_pb2.SEVERITY_UNKNOWN,
    Severity.CRITICAL: fleet_pb2.SEVERITY_CRITICAL,
}


def severity_from_wire(value: int) -> Severity:
    """A wire Severity as ours; unspecified (or a value we do not know) reads as unknown."""
    return _SEVERITY_FROM_WIRE.get(value, Severity.UNKNOWN)


def severity_to_wire(severity: Severity) -> fleet_pb2.Severity:
    """Our Severity as the wire enum."""
    return _SEVERITY_TO_WIRE[severity]


def action_from_wire(value: int) -> str:
    """A wire Action as its JSON spelling ("reboot_node"); unspecified reads as "none"."""
    if value == fleet_pb2.ACTION_UNSPECIFIED:
        return "none"
    return fleet_pb2.Action.Name(value).removeprefix("ACTION_").lower()


def finding_from_wire(finding: fleet_pb2.Finding) -> GateFinding:
    """A reported finding as the gate sees it."""
    return GateFinding(
        check=finding.check,
        severity=severity_from_wire(finding.severity),
        gpu=finding.gpu if finding.HasField("gpu") else None,
        message=finding.message,
        action=action_from_wire(finding.action),
    )


def evidence_from_report(evidence_id: str, report: fleet_pb2.Report) -> Evidence:
    """A health report as health evidence, taken when it was sampled."""
    return Evidence(
        id=evidence_id,
        kind=EvidenceKind.HEALTH,
        verdict=severity_from_wire(report.verdict),
        findings=tuple(finding_from_wire(f) for f in report.findings),
        taken_at=report.sampled_at,
    )


def _reason_to_wire(reason: GateReason) -> fleet_pb2.GateReason:
    out = fleet_pb2.GateReason(
        check=reason.check,
        severity=severity_to_wire(reason.severity),
        message=reason.message,
        evidence_age_s=reason.evidence_age_s or 0.0,
        evidence_id=reason.evidence_id,
    )
    if reason.gpu is not None:
        out.gpu = reason.gpu
    return out


def verdict_to_wire(verdict: GateVerdict, *, with_notes: bool = False) -> fleet_pb2.NodeVerdict:
    """A gate verdict as the NodeVerdict a Preflight result carries: its reasons, and its
    notes (non-blocking findings) too when `with_notes`."""
    return fleet_pb2.NodeVerdict(
        node=verdict.node,
        admitted=verdict.admitted,
        reasons=[_reason_to_wire(r) for r in verdict.reasons],
        notes=[_reason_to_wire(r) for r in verdict.notes] if with_notes else [],
    )


def _joined(values: list[str]) -> str:
    """One node-level value: the GPUs' common value, or every distinct one joined."""
    return ",".join(sorted({v for v in values if v}))


def inventory_from_hello(hello: fleet_pb2.Hello) -> NodeInventory:
    """What a Hello says the node is, for the fleet-level checks."""
    return NodeInventory(
        name=hello.node,
        sku=hello.sku,
        gpu_count=len(hello.gpus),
        components={
            "driver": hello.driver_version,
            "cuda_driver": hello.cuda_driver_version,
            "vbios": _joined([g.vbios_version for g in hello.gpus]),
            "inforom": _joined([g.inforom_image_version for g in hello.gpus]),
        },
    )
