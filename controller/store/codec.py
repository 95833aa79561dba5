"""Pure conversions between wire messages and the store's JSON/text columns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from protos.gpufleet.v1 import fleet_pb2

from .records import NodeIdentity

SEVERITY_NAMES: dict[int, str] = {
    fleet_pb2.SEVERITY_UNSPECIFIED: "unknown",
    fleet_pb2.SEVERITY_OK: "ok",
    fleet_pb2.SEVERITY_WARN: "warn",
    fleet_pb2.SEVERITY_UNKNOWN: "unknown",
    fleet_pb2.SEVERITY_CRITICAL: "critical",
}
SEVERITY_VALUES: dict[str, fleet_pb2.Severity] = {
    "ok": fleet_pb2.SEVERITY_OK,
    "warn": fleet_pb2.SEVERITY_WARN,
    "unknown": fleet_pb2.SEVERITY_UNKNOWN,
    "critical": fleet_pb2.SEVERITY_CRITICAL,
}
ACTION_VALUES: dict[str, fleet_pb2.Action] = {
    "none": fleet_pb2.ACTION_NONE,
    "restart_app": fleet_pb2.ACTION_RESTART_APP,
    "drain": fleet_pb2.ACTION_DRAIN,
    "reset_gpu": fleet_pb2.ACTION_RESET_GPU,
    "reboot_node": fleet_pb2.ACTION_REBOOT_NODE,
    "service": fleet_pb2.ACTION_SERVICE,
}
ACTION_NAMES: dict[int, str] = {value: name for name, value in ACTION_VALUES.items()}
ACTION_NAMES[fleet_pb2.ACTION_UNSPECIFIED] = "none"


def severity_name(value: int) -> str:
    """The design's lower-case verdict word for a Severity value."""
    return SEVERITY_NAMES.get(value, "unknown")


def action_name(value: int) -> str:
    """The design's lower-case action word for an Action value."""
    return ACTION_NAMES.get(value, "none")


def _evidence_value(value: fleet_pb2.EvidenceValue) -> Any:
    kind = value.WhichOneof("kind")
    return None if kind is None else getattr(value, kind)


def finding_to_dict(finding: fleet_pb2.Finding) -> dict[str, Any]:
    """A Finding as the JSON object the design's `findings` lists use."""
    out: dict[str, Any] = {
        "check": finding.check,
        "severity": severity_name(finding.severity),
        "gpu": finding.gpu if finding.HasField("gpu") else None,
        "message": finding.message,
        "action": action_name(finding.action),
    }
    if finding.evidence:
        out["evidence"] = {k: _evidence_value(v) for k, v in finding.evidence.items()}
    return out


def dict_to_finding(data: dict[str, Any]) -> fleet_pb2.Finding:
    """The inverse of finding_to_dict (unknown words map to UNSPECIFIED)."""
    finding = fleet_pb2.Finding(
        check=str(data.get("check", "")),
        severity=SEVERITY_VALUES.get(str(data.get("severity", "")), fleet_pb2.SEVERITY_UNSPECIFIED),
        message=str(data.get("message", "")),
        action=ACTION_VALUES.get(str(data.get("action", "")), fleet_pb2.ACTION_UNSPECIFIED),
    )
    gpu = data.get("gpu")
    if isinstance(gpu, int):
        finding.gpu = gpu
    for key, value in (data.get("evidence") or {}).items():
        slot = finding.evidence[str(key)]
        if isinstance(value, bool):
            slot.flag = value
        elif isinstance(value, int):
            slot.integer = value
        elif isinstance(value, float):
            slot.number = value
        elif value is not None:
            slot.text = str(value)
    return finding


def gpu_info_to_dict(gpu: fleet_pb2.GpuInfo) -> dict[str, Any]:
    """Inventory (including firmware versions) of one GPU."""
    return {
        "index": gpu.index,
        "uuid": gpu.uuid,
        "name": gpu.name,
        "serial": gpu.serial,
        "board_part_number": gpu.board_part_number,
        "pci_bus_id": gpu.pci_bus_id,
        "vbios_version": gpu.vbios_version,
        "inforom_image_version": gpu.inforom_image_version,
    }


def rail_to_dict(rail: fleet_pb2.NicRail) -> dict[str, Any]:
    """One NIC rail."""
    return {
        "device": rail.device,
        "port": rail.port,
        "state": rail.state,
        "rate_gbps": rail.rate_gbps,
        "gpu": rail.gpu if rail.HasField("gpu") else None,
    }


def dict_to_gpu_info(data: dict[str, Any]) -> fleet_pb2.GpuInfo:
    """The inverse of gpu_info_to_dict."""
    return fleet_pb2.GpuInfo(
        **{k: v for k, v in data.items() if k in fleet_pb2.GpuInfo.DESCRIPTOR.fields_by_name}
    )


def dict_to_rail(data: dict[str, Any]) -> fleet_pb2.NicRail:
    """The inverse of rail_to_dict."""
    rail = fleet_pb2.NicRail(
        device=str(data.get("device", "")),
        port=int(data.get("port", 0)),
        state=str(data.get("state", "")),
        rate_gbps=float(data.get("rate_gbps", 0.0)),
    )
    if isinstance(data.get("gpu"), int):
        rail.gpu = data["gpu"]
    return rail


def identity_from_hello(node: str, hello: fleet_pb2.Hello) -> NodeIdentity:
    """The identity a Hello declares, under the node name the controller gave the stream."""
    return NodeIdentity(
        name=node,
        hostname=hello.hostname,
        agent_version=hello.agent_version,
        sku=hello.sku,
        driver_version=hello.driver_version,
        cuda_driver_version=hello.cuda_driver_version,
        nvlink_domain=hello.nvlink_domain or node,
        rack=hello.rack,
        boot_id=hello.boot_id,
        gpus=tuple(gpu_info_to_dict(g) for g in hello.gpus),
        rails=tuple(rail_to_dict(r) for r in hello.rails),
    )


def rails_by_gpu(rails: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """A node's reported rails ({"device", "port", "gpu"} dicts) as "<device>/<port>" per GPU
    index ("" for a GPU with none; rails without a GPU affinity are left out)."""
    by_gpu: dict[int, str] = {}
    for rail in rails:
        gpu, device = rail.get("gpu"), rail.get("device")
        if isinstance(gpu, int) and 0 <= gpu < 4096 and isinstance(device, str) and device:
            by_gpu.setdefault(gpu, f"{device}/{rail.get('port') or 1}")
    return tuple(by_gpu.get(i, "") for i in range(max(by_gpu, default=-1) + 1))
