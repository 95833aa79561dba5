"""The central rule for readings that could not be taken, written once for every check.

A field that is `None` is judged by its `unavailable` entry:
- NOT_SUPPORTED (or no entry at all): the GPU has no such counter. No finding, no false alarm.
- ERROR: one UNKNOWN finding per (check, GPU), naming every unreadable field and its NVML error.
- GPU_LOST: the reachability check reports the GPU; every other check skips lost GPUs entirely.

`run_per_gpu` applies the rule, pairs each GPU with its previous reading for rates, and hands a
`GpuView` to the check's pure judge, which only ever sees readings that are present.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from agent.model import (
    Action,
    EvidenceValue,
    Finding,
    GpuSample,
    NodeSample,
    ReadStatus,
    Severity,
    Unavailable,
)
from agent.policy import Policy, SkuLimits

CheckFn = Callable[[NodeSample, NodeSample | None, Policy], list[Finding]]
"""Every check: (sample, previous sample or None, policy) -> findings. Pure."""


@dataclass(frozen=True, slots=True)
class GpuView:
    """What a per-GPU judge sees: this reading, the same GPU's previous one, and its limits."""

    gpu: GpuSample
    prev: GpuSample | None  # same index and UUID in the previous sample; None = no rates
    elapsed_s: float | None  # seconds between the two samples; None exactly when prev is None
    limits: SkuLimits
    policy: Policy


GpuJudge = Callable[[GpuView], list[Finding]]


def finding(
    check: str,
    severity: Severity,
    message: str,
    *,
    gpu: int | None = None,
    action: Action = Action.NONE,
    **evidence: EvidenceValue,
) -> Finding:
    """A Finding with its evidence given as keyword arguments."""
    return Finding(
        check=check, severity=severity, message=message, gpu=gpu, action=action, evidence=evidence
    )


def unreadable(
    check: str, fields: Iterable[str], unavailable: Mapping[str, Unavailable], gpu: int | None
) -> list[Finding]:
    """One UNKNOWN finding naming every field of `fields` whose read failed (ERROR), else none."""
    failed = [
        (name, entry)
        for name in fields
        if (entry := unavailable.get(name)) is not None and entry.status is ReadStatus.ERROR
    ]
    if not failed:
        return []
    names = ", ".join(name for name, _ in failed)
    details = "; ".join(f"{name}: {entry.detail or 'error'}" for name, entry in failed)
    where = f"GPU {gpu}" if gpu is not None else "This node"
    evidence: dict[str, EvidenceValue] = {name: entry.detail or "error" for name, entry in failed}
    return [
        Finding(
            check=check,
            severity=Severity.UNKNOWN,
            message=f"{where}: could not read {names} ({details}); {check} cannot be judged. "
            "Re-run the check; if the read keeps failing, inspect the driver (nvidia-smi -q).",
            gpu=gpu,
            evidence={"unreadable": names, **evidence},
        )
    ]


def elapsed_between(sample: NodeSample, previous: NodeSample | None) -> float | None:
    """Monotonic seconds from `previous` to `sample`; None without a usable earlier sample."""
    if previous is None:
        return None
    elapsed = sample.monotonic - previous.monotonic
    return elapsed if elapsed > 0 else None


def same_gpu(gpu: GpuSample, prev: GpuSample | None) -> GpuSample | None:
    """`prev` when it is the same physical GPU (UUIDs agree where both are known), else None."""
    if prev is None or (prev.unavailable and prev.lost):
        return None
    if gpu.uuid is not None and prev.uuid is not None and gpu.uuid != prev.uuid:
        return None
    return prev


def delta(current: int | None, previous: int | None) -> int | None:
    """Growth of a cumulative counter; None when either reading is missing or it went backwards."""
    if current is None or previous is None or current < previous:
        return None
    return current - previous


def run_per_gpu(
    check: str,
    fields: tuple[str, ...],
    judge: GpuJudge,
    sample: NodeSample,
    previous: NodeSample | None,
    policy: Policy,
) -> list[Finding]:
    """Apply the central rule for `fields` on every reachable GPU, then run `judge` on each."""
    limits = policy.limits_for(sample)
    elapsed = elapsed_between(sample, previous)
    earlier = {g.index: g for g in previous.gpus} if previous is not None and elapsed else {}
    out: list[Finding] = []
    for gpu in sample.gpus:
        if gpu.unavailable:
            if gpu.lost:
                continue
            out.extend(unreadable(check, fields, gpu.unavailable, gpu.index))
        prev = same_gpu(gpu, earlier.get(gpu.index))
        view = GpuView(gpu, prev, elapsed if prev is not None else None, limits, policy)
        out.extend(judge(view))
    return out
