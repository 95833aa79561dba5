"""NVLink fabric registration (GB200/GB300 NVL racks, NVSwitch systems).

A GPU that reports a fabric state other than NOT_SUPPORTED is always judged: NOT_STARTED is
CRITICAL (Fabric Manager / IMEX has not registered it), IN_PROGRESS WARNs, COMPLETED needs status
SUCCESS (0) and a health mask with no problem flag set (DCGM: route unhealthy, bandwidth
degraded, route recovery, access-timeout recovery and incorrect configuration fail).
NOT_SUPPORTED is CRITICAL only on a SKU whose policy says `fabric_expected`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from agent.checks.readings import GpuView, run_per_gpu
from agent.model import Action, EvidenceValue, Finding, NodeSample, Severity
from agent.policy import Policy

STATE_NOT_SUPPORTED, STATE_NOT_STARTED, STATE_IN_PROGRESS, STATE_COMPLETED = 0, 1, 2, 3
STATE_NAMES: Mapping[int, str] = MappingProxyType(
    {0: "NOT_SUPPORTED", 1: "NOT_STARTED", 2: "IN_PROGRESS", 3: "COMPLETED"}
)

# NVML_GPU_FABRIC_HEALTH_MASK_*: 2-bit flags where TRUE (1) is the problem.
HEALTH_FLAGS: Mapping[str, int] = MappingProxyType(
    {"degraded_bw": 0, "route_recovery": 2, "route_unhealthy": 4, "access_timeout_recovery": 6}
)
_FLAG_TRUE = 1
# 4-bit incorrect-configuration field at shift 8: 0 not supported, 1 none, 2.. a problem.
INCORRECT_CONFIGURATION_SHIFT = 8
INCORRECT_CONFIGURATION: Mapping[int, str] = MappingProxyType(
    {
        2: "incorrect_sysguid",
        3: "incorrect_chassis_sn",
        4: "no_partition",
        5: "insufficient_nvlinks",
        6: "incompatible_gpu_fw",
        7: "invalid_location",
        8: "gpu_state_invalid",
    }
)


def health_problems(mask: int) -> list[str]:
    """Names of the problems a fabric health mask reports; empty when healthy."""
    problems = [name for name, shift in HEALTH_FLAGS.items() if (mask >> shift) & 0x3 == _FLAG_TRUE]
    config = (mask >> INCORRECT_CONFIGURATION_SHIFT) & 0xF
    if config > 1:
        problems.append(INCORRECT_CONFIGURATION.get(config, f"incorrect_configuration_{config}"))
    return problems


def check_fabric(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """Fabric registration state, status and health mask of every GPU."""
    return run_per_gpu("fabric", ("fabric",), _judge_fabric, sample, previous, policy)


def _judge_fabric(view: GpuView) -> list[Finding]:
    info, i = view.gpu.fabric, view.gpu.index
    if info is None:
        return []
    state = STATE_NAMES.get(info.state, f"UNKNOWN_{info.state}")
    common: dict[str, EvidenceValue] = {
        "state": state,
        "cluster_uuid": info.cluster_uuid,
        "clique_id": info.clique_id,
    }
    if info.state == STATE_NOT_SUPPORTED:
        if not view.limits.fabric_expected:
            return []
        return [_fabric(
            "fabric_state", Severity.CRITICAL, Action.DRAIN, i,
            "reports no NVLink fabric, but this SKU needs one. Check Fabric Manager / IMEX and "
            "the NVLink switch trays.", common,
        )]  # fmt: skip
    if info.state == STATE_IN_PROGRESS:
        return [_fabric(
            "fabric_state", Severity.WARN, Action.NONE, i,
            "NVLink fabric registration is still in progress. Re-check shortly.", common,
        )]  # fmt: skip
    if info.state != STATE_COMPLETED:
        return [_fabric(
            "fabric_state", Severity.CRITICAL, Action.DRAIN, i,
            f"NVLink fabric registration is {state}. Check that Fabric Manager / IMEX runs.",
            common,
        )]  # fmt: skip
    if info.status != 0:
        return [_fabric(
            "fabric_status", Severity.CRITICAL, Action.REBOOT_NODE, i,
            f"NVLink fabric registration failed (NVML status {info.status}). Reboot the node; "
            "if it fails again, check Fabric Manager logs.", {**common, "status": info.status},
        )]  # fmt: skip
    problems = health_problems(info.health_mask)
    if not problems:
        return []
    return [_fabric(
        "fabric_health", Severity.CRITICAL, Action.DRAIN, i,
        f"NVLink fabric reports {', '.join(problems)}. Drain the node and check the NVLink "
        "switch trays and Fabric Manager.",
        {**common, "health_mask": info.health_mask, "problems": ",".join(problems)},
    )]  # fmt: skip


def _fabric(
    check: str,
    severity: Severity,
    action: Action,
    gpu: int,
    text: str,
    evidence: Mapping[str, EvidenceValue],
) -> Finding:
    return Finding(check, severity, f"GPU {gpu}: {text}", gpu, action, dict(evidence))
