"""PCIe: replay rate over the window, and the link's width and generation.

Replay budget (DCGM's PCIe watch): replays per minute may not exceed ceil(per-lane rate x lanes),
the per-lane rate assuming a bit-error rate of 1e-12 at line rate. The rate is taken over at least
one minute (a shorter window compares the raw count with the per-minute budget), so a short
`--window` cannot turn one replay into a false alarm.

The current link generation drops at idle to save power, so only the link's maximum generation is
compared with the SKU's minimum; width is compared as it is (a narrow link is a seating fault).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

from agent.checks.readings import GpuView, delta, finding, run_per_gpu
from agent.model import Finding, NodeSample, Severity
from agent.policy import Policy

# Allowed replays per minute per lane, by PCIe generation (DCGM's DcgmGPUHardwareLimits).
REPLAYS_PER_MIN_PER_LANE: Mapping[int, float] = MappingProxyType(
    {1: 0.15, 2: 0.3, 3: 0.48, 4: 0.96, 5: 1.92, 6: 3.84}
)


def replay_budget_per_min(gen: int, width: int, factor: float = 1.0) -> int:
    """DCGM's replay budget for a link; generations past the table double per generation."""
    top = max(REPLAYS_PER_MIN_PER_LANE)
    per_lane = REPLAYS_PER_MIN_PER_LANE.get(gen)
    if per_lane is None:
        per_lane = REPLAYS_PER_MIN_PER_LANE[top] * 2 ** max(gen - top, 0)
    return math.ceil(per_lane * width * factor)


def check_pcie_replay(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """PCIe replays per minute against the link's budget (needs a previous sample)."""
    fields = ("pcie_replay_count",)
    return run_per_gpu("pcie_replay", fields, _judge_replay, sample, previous, policy)


def _judge_replay(view: GpuView) -> list[Finding]:
    if view.prev is None or view.elapsed_s is None:
        return []
    gpu = view.gpu
    grown = delta(gpu.pcie_replay_count, view.prev.pcie_replay_count)
    gen = gpu.pcie_gen_current or gpu.pcie_gen_max
    width = gpu.pcie_width_current or gpu.pcie_width_max
    if not grown or not gen or not width:
        return []
    per_min = grown / max(view.elapsed_s / 60.0, 1.0)
    budget = replay_budget_per_min(gen, width, view.limits.pcie_replay_rate_factor)
    if per_min <= budget:
        return []
    return [
        finding(
            "pcie_replay_rate",
            Severity.WARN,
            f"GPU {gpu.index}: {per_min:.0f} PCIe replays per minute, over the budget of "
            f"{budget}/min for Gen{gen} x{width}. Check the slot, riser and cabling.",
            gpu=gpu.index,
            replays=grown,
            window_s=round(view.elapsed_s, 3),
            replays_per_min=round(per_min, 3),
            threshold_per_min=budget,
            pcie_gen=gen,
            pcie_width=width,
        )
    ]


def check_pcie_link(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Link width below its maximum or the SKU minimum; maximum generation below the minimum."""
    fields = ("pcie_width_current", "pcie_width_max", "pcie_gen_max")
    return run_per_gpu("pcie_link", fields, _judge_link, sample, previous, policy)


def _judge_link(view: GpuView) -> list[Finding]:
    gpu, limits, i = view.gpu, view.limits, view.gpu.index
    width, width_max, gen_max = gpu.pcie_width_current, gpu.pcie_width_max, gpu.pcie_gen_max
    out: list[Finding] = []
    if limits.check_pcie_width and width and width_max and width < width_max:
        out.append(
            finding(
                "pcie_width_degraded",
                Severity.WARN,
                f"GPU {i}: PCIe link runs x{width} of x{width_max}. Re-seat the GPU or its riser "
                "at the next maintenance.",
                gpu=i,
                pcie_width=width,
                pcie_width_max=width_max,
            )
        )
    if limits.min_pcie_width and width and width < limits.min_pcie_width:
        out.append(
            finding(
                "pcie_width_below_min",
                Severity.WARN,
                f"GPU {i}: PCIe link width x{width} is below the x{limits.min_pcie_width} this "
                "SKU needs.",
                gpu=i,
                pcie_width=width,
                threshold=limits.min_pcie_width,
            )
        )
    if limits.min_pcie_gen and gen_max and gen_max < limits.min_pcie_gen:
        out.append(
            finding(
                "pcie_gen_below_min",
                Severity.WARN,
                f"GPU {i}: PCIe link can reach only Gen{gen_max}; this SKU needs "
                f"Gen{limits.min_pcie_gen}. Check BIOS link settings and the slot.",
                gpu=i,
                pcie_gen_max=gen_max,
                threshold=limits.min_pcie_gen,
            )
        )
    return out
