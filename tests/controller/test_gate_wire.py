"""Wire <-> fleet-model conversions used around the gate and the fleet checks."""

from __future__ import annotations

import pytest

from controller.fleet.gate import gate
from controller.fleet.lifecycle import NodeState
from controller.fleet.model import (
    EvidenceKind,
    GatePolicy,
    GateReason,
    GateVerdict,
    NodeFacts,
    Severity,
)
from controller.fleet.wire import (
    action_from_wire,
    evidence_from_report,
    finding_from_wire,
    inventory_from_hello,
    severity_from_wire,
    severity_to_wire,
    verdict_to_wire,
)
from protos.gpufleet.v1 import fleet_pb2 as pb


@pytest.mark.parametrize("severity", list(Severity))
def test_severity_round_trips(severity: Severity) -> None:
    assert severity_from_wire(severity_to_wire(severity)) is severity


def test_unspecified_severity_reads_as_unknown() -> None:
    assert severity_from_wire(pb.SEVERITY_UNSPECIFIED) is Severity.UNKNOWN


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        (pb.ACTION_UNSPECIFIED, "none"),
        (pb.ACTION_NONE, "none"),
        (pb.ACTION_RESTART_APP, "restart_app"),
        (pb.ACTION_REBOOT_NODE, "reboot_node"),
        (pb.ACTION_SERVICE, "service"),
    ],
)
def test_action_spelling(wire: int, text: str) -> None:
    assert action_from_wire(wire) == text


def test_finding_keeps_gpu_presence() -> None:
    node_level = finding_from_wire(pb.Finding(check="pcie", severity=pb.SEVERITY_WARN))
    gpu0 = finding_from_wire(pb.Finding(check="xid", severity=pb.SEVERITY_CRITICAL, gpu=0))
    assert node_level.gpu is None
    assert gpu0.gpu == 0
    assert gpu0.severity is Severity.CRITICAL


def test_report_becomes_health_evidence_that_the_gate_judges() -> None:
    report = pb.Report(sampled_at=1000.0, verdict=pb.SEVERITY_CRITICAL)
    report.findings.add(
        check="xid",
        severity=pb.SEVERITY_CRITICAL,
        gpu=3,
        message="XID 79",
        action=pb.ACTION_REBOOT_NODE,
    )
    evidence = evidence_from_report("r-1", report)
    assert (evidence.kind, evidence.taken_at, evidence.id) == (EvidenceKind.HEALTH, 1000.0, "r-1")
    verdict = gate(NodeFacts("n", NodeState.READY), [evidence], GatePolicy(), now=1010.0)
    wire = verdict_to_wire(verdict)
    assert not wire.admitted
    (reason,) = wire.reasons
    assert (reason.check, reason.gpu, reason.evidence_id) == ("xid", 3, "r-1")
    assert reason.severity == pb.SEVERITY_CRITICAL
    assert reason.evidence_age_s == pytest.approx(10.0)


def test_node_level_reason_has_no_gpu_on_the_wire() -> None:
    verdict = GateVerdict(
        "n", False, (GateReason("lifecycle", Severity.CRITICAL, None, "node is drained"),)
    )
    (reason,) = verdict_to_wire(verdict).reasons
    assert not reason.HasField("gpu")
    assert reason.evidence_age_s == 0.0


def test_inventory_from_hello() -> None:
    hello = pb.Hello(node="n1", sku="h100_sxm", driver_version="570.1", cuda_driver_version="12.8")
    for i, vbios in enumerate(["96.1", "96.1", "96.2"]):
        hello.gpus.add(index=i, vbios_version=vbios, inforom_image_version="G520")
    inv = inventory_from_hello(hello)
    assert (inv.name, inv.sku, inv.gpu_count) == ("n1", "h100_sxm", 3)
    assert dict(inv.components) == {
        "driver": "570.1",
        "cuda_driver": "12.8",
        "vbios": "96.1,96.2",
        "inforom": "G520",
    }


def test_notes_go_on_the_wire_when_asked() -> None:
    note = GateReason("temperature", Severity.WARN, 0, "GPU 0 at 86 C", 5.0, "r-2")
    verdict = GateVerdict("n", True, (), frozenset(), (note,))
    assert not verdict_to_wire(verdict).notes
    (wire,) = verdict_to_wire(verdict, with_notes=True).notes
    assert (wire.check, wire.gpu, wire.severity) == ("temperature", 0, pb.SEVERITY_WARN)
