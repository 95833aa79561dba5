"""Node inventory: the GPU count the policy expects, persistence mode, one VBIOS per node."""

from __future__ import annotations

from agent.checks.readings import GpuView, finding, run_per_gpu
from agent.model import Action, Finding, NodeSample, Severity
from agent.policy import Policy


def check_gpu_count(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """NVML's GPU count against `[node] expected_gpus` (fewer: CRITICAL, more: WARN).

    Skipped when NVML itself is unavailable: the reachability check reports that.
    """
    expected = policy.node.expected_gpus
    if not expected or "nvml" in sample.system.unavailable:
        return []
    seen = sample.system.gpu_count if sample.system.gpu_count is not None else len(sample.gpus)
    if seen == expected:
        return []
    if seen < expected:
        return [
            finding(
                "gpu_count",
                Severity.CRITICAL,
                f"NVML shows {seen} GPU(s), the policy expects {expected}: a GPU is missing "
                "(fell off the bus or failed to initialise). Drain and reboot the node; if it "
                "stays missing, re-seat it and run a field diagnostic.",
                action=Action.REBOOT_NODE,
                gpus_seen=seen,
                gpus_expected=expected,
            )
        ]
    return [
        finding(
            "gpu_count",
            Severity.WARN,
            f"NVML shows {seen} GPU(s), more than the {expected} the policy expects. Fix the "
            "policy's [node] expected_gpus for this node.",
            gpus_seen=seen,
            gpus_expected=expected,
        )
    ]


def check_persistence_mode(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Persistence mode must be on (driver state kept loaded between jobs)."""
    if not policy.node.require_persistence_mode:
        return []
    fields = ("persistence_mode",)
    return run_per_gpu("persistence_mode", fields, _judge_persistence, sample, previous, policy)


def _judge_persistence(view: GpuView) -> list[Finding]:
    if view.gpu.persistence_mode is not False:
        return []
    return [
        finding(
            "persistence_mode",
            Severity.WARN,
            f"GPU {view.gpu.index}: persistence mode is off, so every job pays driver start-up "
            "and state is lost between jobs. Enable nvidia-persistenced.",
            gpu=view.gpu.index,
            persistence_mode=False,
        )
    ]


def check_vbios(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """All GPUs of one SKU in a node should run the same VBIOS."""
    versions: dict[str, list[int]] = {}
    for gpu in sample.gpus:
        if gpu.vbios_version and not gpu.lost:
            versions.setdefault(gpu.vbios_version, []).append(gpu.index)
    if len(versions) <= 1:
        return []
    listing = "; ".join(f"{v} on GPU {', '.join(map(str, idx))}" for v, idx in versions.items())
    return [
        finding(
            "vbios_mismatch",
            Severity.WARN,
            f"GPUs run different VBIOS versions ({listing}). Flash them to the fleet's version.",
            versions=listing,
        )
    ]
