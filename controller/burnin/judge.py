"""Pure burn-in judgement: an absolute per-SKU floor, and the fleet's own cohort baseline.

A node can pass the SKU floor and still pace a thousand-node run, so each result is also
compared with its cohort — same SKU, driver and NCCL version, same group shape — using robust
statistics over the node's peers (leave-one-out): flagged when busbw < median − k·MAD of the
others (MAD scaled by 1.4826 to estimate σ), and only when the cohort is big enough to have a
meaningful median. Leaving the node out matters in small cohorts: with four nodes, one slow
node's own distance otherwise inflates the MAD enough to hide it. The relative floor `min_fraction`
keeps a near-zero MAD (a very uniform fleet) from flagging noise.

A `baseline` (recent passing results of the same cohort that are not being judged now, e.g.
the fleet's stored verdicts when preflight re-tests one stale node) joins every node's peers,
so a node burned in alone is still compared with its cohort.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class BurnInTarget:
    """What a SKU promises at large sizes (all-reduce busbw, GB/s) and how to judge outliers."""

    min_busbw_gbps: float
    k_mad: float = 4.0
    min_fraction_of_median: float = 0.9  # never flag a node within 10 % of its cohort median
    min_cohort: int = 4


DEFAULT_TARGETS: Mapping[str, BurnInTarget] = {
    # 8×H100 SXM NVLink all-reduce: ~480 GB/s with NVLS, ~370 GB/s ring (nccl-tests #212)
    "h100_sxm": BurnInTarget(min_busbw_gbps=360.0),
    # GB200/GB300 NVL72 intra-domain: ~835 GB/s at 4-8 GiB (coreweave/nccl-tests PR #43)
    "gb300": BurnInTarget(min_busbw_gbps=700.0),
    # unknown hardware and the CPU simulation: no absolute floor, cohort only
    "default": BurnInTarget(min_busbw_gbps=0.0),
}


@dataclass(frozen=True)
class CohortKey:
    """Results are only comparable within one of these."""

    sku: str
    driver: str
    nccl: str
    world_size: int


@dataclass(frozen=True)
class Measured:
    """One node's (or group's) burn-in at the largest size."""

    node: str
    key: CohortKey
    busbw_gbps: float
    ok: bool = True
    error: str = ""


@dataclass(frozen=True)
class BurnInJudgement:
    """Verdict for one node, with the numbers that decided it."""

    node: str
    passed: bool
    severity: str  # ok | warn | critical
    check: str
    message: str
    busbw_gbps: float
    cohort_median_gbps: float | None
    threshold_gbps: float | None


def judge(results: Sequence[Measured],
          targets: Mapping[str, BurnInTarget] = DEFAULT_TARGETS,
          baseline: Mapping[CohortKey, Sequence[float]] | None = None) -> list[BurnInJudgement]:
    """Judge every result against its SKU floor and its cohort — the OTHER members of it
    (leave-one-out), so a slow node's own number never widens the band it is judged by —
    plus the `baseline` busbw values of its cohort key, when given."""
    cohorts: dict[CohortKey, list[tuple[int, float]]] = {}
    for i, r in enumerate(results):
        if r.ok:
            cohorts.setdefault(r.key, []).append((i, r.busbw_gbps))
    judged = []
    for i, r in enumerate(results):
        peers = [v for j, v in cohorts.get(r.key, []) if j != i]
        peers += (baseline or {}).get(r.key, ())
        target = targets.get(r.key.sku, targets["default"])
        judged.append(_judge_one(r, peers, target))
    return judged


def cohort_threshold(values: Sequence[float], target: BurnInTarget) -> tuple[float, float] | None:
    """(median, threshold) of a node's peers, or None when they are too few to judge by (the
    cohort, the node included, must have `min_cohort` members)."""
    if len(values) < target.min_cohort - 1:
        return None
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values) * MAD_TO_SIGMA
    threshold = min(median - target.k_mad * mad, median * target.min_fraction_of_median)
    return median, threshold


def _judge_one(r: Measured, cohort: Sequence[float], target: BurnInTarget) -> BurnInJudgement:
    if not r.ok:
        return BurnInJudgement(r.node, False, "critical", "burnin_failed",
                               f"burn-in did not complete: {r.error}", r.busbw_gbps, None, None)
    if r.busbw_gbps < target.min_busbw_gbps:
        return BurnInJudgement(
            r.node, False, "critical", "burnin_below_floor",
            f"all-reduce busbw {r.busbw_gbps:.1f} GB/s is below the {r.key.sku} floor of "
            f"{target.min_busbw_gbps:.0f} GB/s: check NVLink/fabric, run a field diagnostic",
            r.busbw_gbps, None, target.min_busbw_gbps)
    stats = cohort_threshold(cohort, target)
    if stats is not None and r.busbw_gbps < stats[1]:
        median, threshold = stats
        return BurnInJudgement(  # critical for admission: a slow node paces the whole run
            r.node, False, "critical", "burnin_outlier",
            f"all-reduce busbw {r.busbw_gbps:.2f} GB/s is {100 * (1 - r.busbw_gbps / median):.0f}% "
            f"below its cohort's median {median:.2f} GB/s (threshold {threshold:.2f}): a slow node "
            "paces the whole run; keep it out and investigate",
            r.busbw_gbps, median, threshold)
    return BurnInJudgement(r.node, True, "ok", "burnin", "burn-in bandwidth as expected",
                           r.busbw_gbps, stats[0] if stats else None,
                           stats[1] if stats else None)
