"""The fleet's recent burn-in verdicts as a cohort baseline, for burning in only a few nodes.

When preflight re-tests the burn-in of one or a few stale nodes, they are too few to form a
cohort among themselves (the judge needs `min_cohort` members); the latest passing verdicts of
the other nodes fill it. Only results comparable with the new ones count: the node's newest
"burnin" evidence, judged by the controller, passed, of a single node (not a group), no older
than the baseline's age, measured up to the same largest size (busbw is judged at the largest
size and grows with it). The cohort itself (SKU, driver, NCCL, world size) is matched by its
stored label in `outcome.judge_groups`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from controller.fleet.lifecycle import NodeState
from controller.fleet.model import EvidenceKind
from controller.store import EvidenceRow, FleetStore


def _largest(sizes: Any) -> int:
    if not isinstance(sizes, list):
        return 0
    return max((int(s.get("bytes", 0)) for s in sizes if isinstance(s, dict)), default=0)


def baseline_values(evidence: Iterable[EvidenceRow], *, since: float,
                    largest_bytes: int) -> dict[str, list[float]]:
    """busbw of the comparable passing verdicts among `evidence`, by their cohort label."""
    out: dict[str, list[float]] = {}
    for row in evidence:
        detail = row.detail
        label, busbw = detail.get("cohort"), detail.get("busbw_gbps")
        if (row.kind != EvidenceKind.BURNIN or row.verdict != "ok" or row.taken_at < since
                or detail.get("judged") is not True or detail.get("passed") is not True
                or detail.get("members") != [row.node] or not isinstance(label, str)
                or not isinstance(busbw, int | float) or busbw <= 0
                or _largest(detail.get("sizes")) != largest_bytes):
            continue
        out.setdefault(label, []).append(float(busbw))
    return out


def read_baseline(store: FleetStore, *, skus: Collection[str], exclude: Collection[str],
                  since: float, largest_bytes: int) -> dict[str, list[float]]:
    """The baseline from the newest burn-in evidence of every node of `skus` (retired nodes
    and `exclude`, the nodes being burned in now, left out)."""
    latest = (store.latest_evidence(row.name, EvidenceKind.BURNIN)
              for sku in sorted(set(skus)) for row in store.nodes(sku=sku)
              if row.name not in exclude and row.state != NodeState.RETIRED)
    return baseline_values((e for e in latest if e is not None), since=since,
                           largest_bytes=largest_bytes)
