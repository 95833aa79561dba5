"""Reachability: GPUs that fell off the bus, and an NVML that cannot start at all.

A read that raised NVMLError_GpuIsLost marks the GPU lost; it is CRITICAL with reboot_node and
treated as XID 79. Every other check skips lost GPUs, so this is the one finding per lost GPU.

NVML init failure (`system.unavailable["nvml"]`, e.g. driver not loaded, library/kernel version
mismatch after a driver update, no permission) is judged by what the policy knows:
- the policy expects GPUs here (`expected_gpus > 0`): CRITICAL, reboot_node. The node is meant
  to run GPU work and its driver stack is unusable; the usual fixes (load the module, finish the
  driver update) need a reboot.
- no expectation: UNKNOWN. Nothing could be judged, and this host may have no GPUs by design.
- NOT_SUPPORTED (no NVML on this host by design) is silent unless GPUs are expected.
"""

from __future__ import annotations

from agent.checks.readings import finding
from agent.model import Action, Finding, NodeSample, ReadStatus, Severity
from agent.policy import Policy


def check_gpu_lost(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """One CRITICAL finding per GPU that fell off the bus."""
    out: list[Finding] = []
    for gpu in sample.gpus:
        if not gpu.lost:
            continue
        lost_fields = sorted(
            name for name, u in gpu.unavailable.items() if u.status is ReadStatus.GPU_LOST
        )
        detail = next(
            (u.detail for u in gpu.unavailable.values() if u.status is ReadStatus.GPU_LOST), ""
        )
        out.append(
            finding(
                "gpu_lost",
                Severity.CRITICAL,
                f"GPU {gpu.index} has fallen off the bus (NVML: GPU is lost; treated as XID 79). "
                "Drain and reboot the node; if it recurs, re-seat the GPU, check power and "
                "thermals, and run a field diagnostic.",
                gpu=gpu.index,
                action=Action.REBOOT_NODE,
                xid=79,
                uuid=gpu.uuid,
                pci_bus_id=gpu.pci_bus_id,
                fields=",".join(lost_fields),
                error=detail or None,
            )
        )
    return out


def check_nvml(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """NVML could not be started on this node."""
    failure = sample.system.unavailable.get("nvml")
    if failure is None:
        return []
    expected = policy.node.expected_gpus
    error = failure.detail or failure.status.value
    if expected > 0:
        return [
            finding(
                "nvml_unavailable",
                Severity.CRITICAL,
                f"NVML cannot start ({error}) on a node that must have {expected} GPU(s): its "
                "GPUs are unusable. Check the driver (nvidia-smi, dmesg) and reboot the node.",
                action=Action.REBOOT_NODE,
                error=error,
                gpus_expected=expected,
            )
        ]
    if failure.status is ReadStatus.NOT_SUPPORTED:
        return []
    return [
        finding(
            "nvml_unavailable",
            Severity.UNKNOWN,
            f"NVML cannot start ({error}); no GPU on this node could be judged. If this node "
            "has GPUs, check the driver (nvidia-smi, dmesg) and set [node] expected_gpus.",
            error=error,
        )
    ]
