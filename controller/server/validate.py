"""Validation of untrusted AgentMessages (pure): names, sizes, enum values, numbers.

Everything a node sends passes through `check_hello` or `check_message` before it touches the
store or any decision. A violation raises `WireError` carrying the gRPC status to end the
stream with. The limits are documented in fleet.proto.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import grpc

from protos.gpufleet.v1 import fleet_pb2

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
MAX_STRING = 4096
MAX_IDENTITY_STRING = 256
MAX_STDERR_TAIL = 16384
MAX_FINDINGS = 256
MAX_GPUS = 64
MAX_RAILS = 64
MAX_EVIDENCE_ENTRIES = 32
MAX_BURNIN_SIZES = 64

_SEVERITIES = frozenset(fleet_pb2.Severity.values())
_ACTIONS = frozenset(fleet_pb2.Action.values())


class WireError(Exception):
    """A message that breaks the stream protocol; `code` is the status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _invalid(message: str) -> WireError:
    return WireError(grpc.StatusCode.INVALID_ARGUMENT, message)


def check_node_name(name: str, what: str = "node name") -> None:
    """A node name must look like a short hostname label."""
    if not NODE_NAME.fullmatch(name):
        shown = name[:80] + ("..." if len(name) > 80 else "")
        raise _invalid(f"{what} {shown!r} must match {NODE_NAME.pattern}")


def _strings(where: str, limit: int, fields: Iterable[tuple[str, str]]) -> None:
    for name, value in fields:
        if len(value) > limit:
            raise _invalid(f"{where}.{name} is {len(value)} characters (limit {limit})")


def _number(where: str, value: float) -> None:
    if not math.isfinite(value):
        raise _invalid(f"{where} must be a finite number (got {value})")


def _severity(where: str, value: int) -> None:
    if value not in _SEVERITIES:
        raise _invalid(f"{where} has unknown severity {value}")


def _action(where: str, value: int) -> None:
    if value not in _ACTIONS:
        raise _invalid(f"{where} has unknown action {value}")


def check_hello(msg: fleet_pb2.AgentMessage) -> fleet_pb2.Hello:
    """The first message of a stream must be a valid Hello; return it."""
    if msg.WhichOneof("body") != "hello":
        raise _invalid("the first message of a stream must be a Hello")
    hello = msg.hello
    check_node_name(hello.node, "Hello.node")
    _strings("Hello", MAX_IDENTITY_STRING, (
        ("hostname", hello.hostname), ("agent_version", hello.agent_version),
        ("sku", hello.sku), ("driver_version", hello.driver_version),
        ("cuda_driver_version", hello.cuda_driver_version),
        ("nvlink_domain", hello.nvlink_domain), ("rack", hello.rack), ("boot_id", hello.boot_id),
    ))
    if len(hello.gpus) > MAX_GPUS:
        raise _invalid(f"Hello lists {len(hello.gpus)} GPUs (limit {MAX_GPUS})")
    if len(hello.rails) > MAX_RAILS:
        raise _invalid(f"Hello lists {len(hello.rails)} rails (limit {MAX_RAILS})")
    for gpu in hello.gpus:
        _strings(f"Hello.gpus[{gpu.index}]", MAX_IDENTITY_STRING, (
            ("uuid", gpu.uuid), ("name", gpu.name), ("serial", gpu.serial),
            ("board_part_number", gpu.board_part_number), ("pci_bus_id", gpu.pci_bus_id),
            ("vbios_version", gpu.vbios_version),
            ("inforom_image_version", gpu.inforom_image_version),
        ))
    for rail in hello.rails:
        _strings("Hello.rails", MAX_IDENTITY_STRING, (("device", rail.device),
                                                      ("state", rail.state)))
        _number("Hello.rails.rate_gbps", rail.rate_gbps)
    _number("AgentMessage.sent_at", msg.sent_at)
    return hello


def _check_finding(where: str, finding: fleet_pb2.Finding) -> None:
    _strings(where, MAX_STRING, (("check", finding.check), ("message", finding.message)))
    _severity(where, finding.severity)
    _action(where, finding.action)
    if len(finding.evidence) > MAX_EVIDENCE_ENTRIES:
        raise _invalid(f"{where} has {len(finding.evidence)} evidence entries "
                       f"(limit {MAX_EVIDENCE_ENTRIES})")
    for key, value in finding.evidence.items():
        if len(key) > MAX_IDENTITY_STRING or len(value.text) > MAX_STRING:
            raise _invalid(f"{where}.evidence[{key[:40]!r}] is too long")
        if value.WhichOneof("kind") == "number":
            _number(f"{where}.evidence[{key!r}]", value.number)


def _finding_ok(finding: fleet_pb2.Finding) -> bool:
    """The hot path: True when the finding is certainly valid (no error text built)."""
    if (len(finding.check) > MAX_STRING or len(finding.message) > MAX_STRING
            or finding.severity not in _SEVERITIES or finding.action not in _ACTIONS):
        return False
    evidence = finding.evidence
    if not evidence:
        return True
    if len(evidence) > MAX_EVIDENCE_ENTRIES:
        return False
    for key, value in evidence.items():
        if len(key) > MAX_IDENTITY_STRING or len(value.text) > MAX_STRING:
            return False
        if not math.isfinite(value.number):
            return False
    return True


def _check_report(report: fleet_pb2.Report) -> None:
    _severity("Report", report.verdict)
    _action("Report", report.action)
    _number("Report.sampled_at", report.sampled_at)
    _number("Report.sweep_duration_s", report.sweep_duration_s)
    _number("Report.window_s", report.window_s)
    if len(report.directive_id) > MAX_IDENTITY_STRING:
        raise _invalid("Report.directive_id is too long")
    findings = report.findings
    if len(findings) > MAX_FINDINGS:
        raise _invalid(f"Report has {len(findings)} findings (limit {MAX_FINDINGS})")
    if len(report.gpus) > MAX_GPUS:
        raise _invalid(f"Report has {len(report.gpus)} GPUs (limit {MAX_GPUS})")
    for i, finding in enumerate(findings):
        if not _finding_ok(finding):
            _check_finding(f"Report.findings[{i}]", finding)


def _check_event(event: fleet_pb2.Event) -> None:
    kind = event.WhichOneof("kind")
    if kind == "xid":
        xid = event.xid
        _severity("XidEvent", xid.severity)
        _action("XidEvent", xid.action)
        _number("XidEvent.at", xid.at)
        _strings("XidEvent", MAX_STRING, (("pci_bus_id", xid.pci_bus_id),
                                          ("source", xid.source), ("message", xid.message)))
    elif kind == "rank_exit":
        ex = event.rank_exit
        _number("RankExit.at", ex.at)
        _strings("RankExit", MAX_STRING, (("run_id", ex.run_id), ("reason", ex.reason)))
        _strings("RankExit", MAX_STDERR_TAIL, (("stderr_tail", ex.stderr_tail),))
    elif kind == "progress":
        pr = event.progress
        # loss may legitimately be NaN/inf (a diverging run is worth seeing), times may not
        _number("RankProgress.at", pr.at)
        _number("RankProgress.step_time_s", pr.step_time_s)
        _strings("RankProgress", MAX_STRING, (("run_id", pr.run_id),))
    else:
        raise _invalid("Event carries no kind")


def _check_result(result: fleet_pb2.DirectiveResult) -> None:
    _strings("DirectiveResult", MAX_STRING, (("directive_id", result.directive_id),
                                             ("message", result.message)))
    if not result.directive_id:
        raise _invalid("DirectiveResult.directive_id is empty")
    if result.WhichOneof("payload") == "burnin":
        burnin = result.burnin
        _strings("BurnInResult", MAX_STRING, (("burnin_id", burnin.burnin_id),
                                              ("backend", burnin.backend),
                                              ("error", burnin.error),
                                              ("nccl_version", burnin.nccl_version)))
        if len(burnin.sizes) > MAX_BURNIN_SIZES:
            raise _invalid(f"BurnInResult has {len(burnin.sizes)} sizes "
                           f"(limit {MAX_BURNIN_SIZES})")


def check_message(msg: fleet_pb2.AgentMessage, node: str) -> str:
    """Validate a message after the Hello on `node`'s stream; return its body kind."""
    if msg.node and msg.node != node:
        raise WireError(grpc.StatusCode.PERMISSION_DENIED,
                        f"this stream is node {node!r}; a message may not claim {msg.node[:80]!r}")
    _number("AgentMessage.sent_at", msg.sent_at)
    body = msg.WhichOneof("body")
    if body == "report":
        _check_report(msg.report)
    elif body == "event":
        _check_event(msg.event)
    elif body == "result":
        _check_result(msg.result)
    elif body == "hello":
        raise _invalid("Hello is allowed only as the first message of a stream")
    else:
        raise _invalid("AgentMessage carries no body")
    if msg.seq == 0 and body == "report":
        raise _invalid("a Report must carry seq > 0 (reports are durable)")
    return str(body)
