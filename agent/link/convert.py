"""Pure conversion from agent domain types to the gpufleet.v1 wire messages (and back for findings).

Everything sent is first fitted to the controller's documented bounds (fleet.proto header):
strings at most 4 KiB of UTF-8 (stderr_tail 16 KiB), at most 256 findings (the most severe are
kept), 64 GPUs per report and 32 evidence entries per finding. A message over those bounds would
end the stream with INVALID_ARGUMENT on every replay, so it is trimmed here rather than refused.
Node names that the controller would refuse are a configuration error: `hello_to_proto` raises.
The reverse direction (controller -> agent) is `directive_from_proto`, re-exported from
`agent.link.directives`.
"""

from __future__ import annotations

import math
import re

from agent.burnin.spec import BurnInResult
from agent.link.directives import directive_from_proto as directive_from_proto
from agent.link.types import DirectiveResult, NodeIdentity, ProgressRecord, RankExit
from agent.model import (
    Action,
    EvidenceValue,
    Finding,
    GpuSample,
    NodeReport,
    Severity,
    XidEvent,
    worst_severity,
)
from protos.gpufleet.v1 import fleet_pb2

MAX_STRING_BYTES = 4096
MAX_STDERR_BYTES = 16384
MAX_FINDINGS = 256
MAX_GPUS = 64
MAX_EVIDENCE = 32
_INT64 = (-(2**63), 2**63 - 1)
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_ELLIPSIS = "…"

_SEVERITY = {
    Severity.OK: fleet_pb2.SEVERITY_OK,
    Severity.WARN: fleet_pb2.SEVERITY_WARN,
    Severity.UNKNOWN: fleet_pb2.SEVERITY_UNKNOWN,
    Severity.CRITICAL: fleet_pb2.SEVERITY_CRITICAL,
}
_ACTION = {
    Action.NONE: fleet_pb2.ACTION_NONE,
    Action.RESTART_APP: fleet_pb2.ACTION_RESTART_APP,
    Action.DRAIN: fleet_pb2.ACTION_DRAIN,
    Action.RESET_GPU: fleet_pb2.ACTION_RESET_GPU,
    Action.REBOOT_NODE: fleet_pb2.ACTION_REBOOT_NODE,
    Action.SERVICE: fleet_pb2.ACTION_SERVICE,
}
_SEVERITY_BACK = {v: k for k, v in _SEVERITY.items()}
_ACTION_BACK = {v: k for k, v in _ACTION.items()}


def fit(text: str, limit: int = MAX_STRING_BYTES) -> str:
    """`text` cut to at most `limit` UTF-8 bytes on a character boundary, marked with '…'."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    room = limit - len(_ELLIPSIS.encode("utf-8"))
    return raw[:room].decode("utf-8", errors="ignore") + _ELLIPSIS


def validate_node_name(name: str) -> str:
    """Return `name` if the controller accepts it as a node name, else raise ValueError."""
    if not _NODE_NAME.fullmatch(name):
        raise ValueError(
            f"node name {name!r} is not accepted by the controller: use 1-63 characters of "
            "[A-Za-z0-9._-], starting with a letter or digit"
        )
    return name


def severity_to_proto(severity: Severity) -> fleet_pb2.Severity:
    """Domain severity -> wire enum."""
    return _SEVERITY[severity]


def action_to_proto(action: Action) -> fleet_pb2.Action:
    """Domain action -> wire enum."""
    return _ACTION[action]


def severity_from_proto(value: int) -> Severity:
    """Wire enum -> domain severity; ValueError for UNSPECIFIED or unknown values."""
    try:
        return _SEVERITY_BACK[value]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"not a known severity: {value}") from None


def action_from_proto(value: int) -> Action:
    """Wire enum -> domain action; ValueError for UNSPECIFIED or unknown values."""
    try:
        return _ACTION_BACK[value]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"not a known action: {value}") from None


def _evidence_to_proto(value: EvidenceValue, out: fleet_pb2.EvidenceValue) -> None:
    if value is None:
        return
    if isinstance(value, bool):  # before int: bool is an int
        out.flag = value
    elif isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            out.integer = value
        else:
            out.text = str(value)  # beyond int64: exact as text rather than rounded
    elif isinstance(value, float):
        out.number = value
    else:
        out.text = fit(str(value))


def _evidence_from_proto(value: fleet_pb2.EvidenceValue) -> EvidenceValue:
    kind = value.WhichOneof("kind")
    if kind is None:
        return None
    result: EvidenceValue = getattr(value, kind)
    return result


def finding_to_proto(finding: Finding) -> fleet_pb2.Finding:
    """One finding, its evidence values typed (None = an empty EvidenceValue)."""
    msg = fleet_pb2.Finding(
        check=fit(finding.check),
        severity=severity_to_proto(finding.severity),
        message=fit(finding.message),
        action=action_to_proto(finding.action),
    )
    if finding.gpu is not None:
        msg.gpu = finding.gpu
    for key in sorted(finding.evidence)[:MAX_EVIDENCE]:
        _evidence_to_proto(finding.evidence[key], msg.evidence[fit(key)])
    return msg


def finding_from_proto(msg: fleet_pb2.Finding) -> Finding:
    """The inverse of `finding_to_proto` (ValueError for unknown enum values)."""
    return Finding(
        check=msg.check,
        severity=severity_from_proto(msg.severity),
        message=msg.message,
        gpu=msg.gpu if msg.HasField("gpu") else None,
        action=action_from_proto(msg.action),
        evidence={k: _evidence_from_proto(v) for k, v in msg.evidence.items()},
    )


def _telemetry(gpu: GpuSample) -> fleet_pb2.GpuTelemetry:
    msg = fleet_pb2.GpuTelemetry(index=gpu.index, lost=gpu.lost)
    for name in ("temperature_c", "power_w", "sm_clock_mhz", "gpu_util_pct", "memory_temp_c"):
        value = getattr(gpu, name)
        if value is not None:
            setattr(msg, name, float(value))
    if gpu.energy_mj is not None and 0 <= gpu.energy_mj < 2**64:
        msg.energy_mj = gpu.energy_mj
    return msg


def _most_severe(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    if len(findings) <= MAX_FINDINGS:
        return findings
    ranked = sorted(range(len(findings)), key=lambda i: (-findings[i].severity.rank, i))
    keep = sorted(ranked[:MAX_FINDINGS])
    return tuple(findings[i] for i in keep)


def report_to_proto(
    report: NodeReport,
    *,
    sweep_duration_s: float = 0.0,
    window_s: float = 0.0,
    directive_id: str = "",
) -> fleet_pb2.Report:
    """A judged sweep. The verdict and action are judged over all findings, even trimmed ones."""
    return fleet_pb2.Report(
        sampled_at=report.sample.timestamp,
        verdict=severity_to_proto(worst_severity(f.severity for f in report.findings)),
        action=action_to_proto(report.action),
        findings=[finding_to_proto(f) for f in _most_severe(report.findings)],
        gpus=[_telemetry(g) for g in report.sample.gpus[:MAX_GPUS]],
        sweep_duration_s=sweep_duration_s,
        window_s=window_s,
        directive_id=fit(directive_id),
    )


def xid_to_proto(event: XidEvent, severity: Severity, action: Action) -> fleet_pb2.XidEvent:
    """One XID with the agent's judgement of it (from the XID catalog)."""
    msg = fleet_pb2.XidEvent(
        xid=event.xid,
        pci_bus_id=fit(event.pci_bus_id or ""),
        source=fit(event.source),
        message=fit(event.message),
        at=event.timestamp,
        severity=severity_to_proto(severity),
        action=action_to_proto(action),
    )
    if event.gpu is not None:
        msg.gpu = event.gpu
    return msg


def xid_from_proto(msg: fleet_pb2.XidEvent) -> tuple[XidEvent, Severity, Action]:
    """The inverse of `xid_to_proto`."""
    event = XidEvent(
        xid=msg.xid,
        timestamp=msg.at,
        gpu=msg.gpu if msg.HasField("gpu") else None,
        pci_bus_id=msg.pci_bus_id or None,
        source=msg.source,
        message=msg.message,
    )
    return event, severity_from_proto(msg.severity), action_from_proto(msg.action)


def _gpu_info(gpu: GpuSample) -> fleet_pb2.GpuInfo:
    return fleet_pb2.GpuInfo(
        index=gpu.index,
        uuid=fit(gpu.uuid or ""),
        name=fit(gpu.name or ""),
        serial=fit(gpu.serial or ""),
        board_part_number=fit(gpu.board_part_number or ""),
        pci_bus_id=fit(gpu.pci_bus_id or ""),
        vbios_version=fit(gpu.vbios_version or ""),
        inforom_image_version=fit(gpu.inforom_image_version or ""),
    )


def _rails(identity: NodeIdentity) -> list[fleet_pb2.NicRail]:
    owner: dict[str, int] = {}
    for gpu, rail in sorted(identity.rails.items()):
        owner.setdefault(rail, gpu)
    rails = []
    for port in identity.ib_ports:
        msg = fleet_pb2.NicRail(
            device=fit(port.device),
            port=port.port,
            state=fit(port.state),
            rate_gbps=port.rate_gbps if port.rate_gbps is not None else 0.0,
        )
        rail_gpu = owner.get(f"{port.device}/{port.port}")
        if rail_gpu is not None:
            msg.gpu = rail_gpu
        rails.append(msg)
    return rails


def hello_to_proto(identity: NodeIdentity, *, next_seq: int, boot_id: str) -> fleet_pb2.Hello:
    """The first message of every stream; ValueError for a node name the controller refuses."""
    return fleet_pb2.Hello(
        node=validate_node_name(identity.node),
        hostname=fit(identity.hostname),
        agent_version=fit(identity.agent_version),
        sku=fit(identity.sku),
        driver_version=fit(identity.driver_version),
        cuda_driver_version=fit(identity.cuda_driver_version),
        gpus=[_gpu_info(g) for g in identity.gpus[:MAX_GPUS]],
        nvlink_domain=fit(identity.nvlink_domain or identity.node),
        rack=fit(identity.rack),
        rails=_rails(identity),
        next_seq=next_seq,
        boot_id=fit(boot_id),
    )


def rank_exit_to_proto(event: RankExit) -> fleet_pb2.RankExit:
    """A rank ended; the stderr tail keeps its last 16 KiB."""
    tail = event.stderr_tail
    raw = tail.encode("utf-8")
    if len(raw) > MAX_STDERR_BYTES:  # keep the end: that is where the error is
        tail = _ELLIPSIS + raw[-(MAX_STDERR_BYTES - 3) :].decode("utf-8", errors="ignore")
    return fleet_pb2.RankExit(
        run_id=fit(event.run_id),
        attempt=event.attempt,
        rank=event.rank,
        exit_code=event.exit_code,
        at=event.at,
        reason=fit(event.reason),
        stderr_tail=tail,
    )


def progress_to_proto(record: ProgressRecord) -> fleet_pb2.RankProgress:
    """One step of one rank (ephemeral on the wire). A missing loss is sent as NaN."""
    return fleet_pb2.RankProgress(
        run_id=fit(record.run_id),
        attempt=record.attempt,
        rank=record.rank,
        step=record.step,
        loss=record.loss if record.loss is not None else math.nan,
        step_time_s=record.step_time_s,
        tokens=record.tokens,
        at=record.ts,
    )


def burnin_to_proto(result: BurnInResult, burnin_id: str) -> fleet_pb2.BurnInResult:
    """A burn-in's measurements, one BurnInSize per message size."""
    return fleet_pb2.BurnInResult(
        burnin_id=fit(burnin_id),
        backend=fit(result.backend),
        world_size=result.world_size,
        sizes=[
            fleet_pb2.BurnInSize(
                bytes=s.bytes,
                time_us=s.time_us,
                algbw_gbps=s.algbw_gbps,
                busbw_gbps=s.busbw_gbps,
                wrong=s.wrong,
            )
            for s in result.sizes
        ],
        timed_out=result.timed_out,
        error=fit(result.error),
        duration_s=result.duration_s,
        nccl_version=fit(result.nccl_version),
    )


def result_to_proto(result: DirectiveResult) -> fleet_pb2.DirectiveResult:
    """The answer to a directive, with the burn-in measurements when there are any."""
    msg = fleet_pb2.DirectiveResult(
        directive_id=fit(result.directive_id), ok=result.ok, message=fit(result.message)
    )
    if result.burnin is not None:
        msg.burnin.CopyFrom(burnin_to_proto(result.burnin, result.burnin_id))
    return msg
