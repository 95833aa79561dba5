"""Burn-in: each node's all-reduce bus bandwidth against its cohort's median, outliers, and
how old each node's evidence is. Series come from the controller's burn-in judge (proposed in
the contract until it exports them)."""

from __future__ import annotations

from typing import Any

from dashboards.grafana import (
    Board,
    Q,
    bargauge_panel,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)

UID = "gpufleet-burnin"
_COHORT = 'cohort=~"$cohort"'
BUSBW = f"gpufleet_burnin_busbw_bytes_per_second{{{_COHORT}}}"
MEDIAN = f"quantile by (cohort) (0.5, {BUSBW})"


def build() -> dict[str, Any]:
    """The dashboard JSON."""
    b = Board(
        "gpufleet / Burn-in",
        UID,
        "NCCL all-reduce bus bandwidth per node against its cohort (same SKU, driver, NCCL, "
        "group shape): the median, each node's ratio to it, and the judge's outliers.",
        ["burnin"],
    )
    b.variable(query_variable(
        "cohort", "Cohort", "label_values(gpufleet_burnin_busbw_bytes_per_second, cohort)"
    ))  # fmt: skip
    b.row("Cohort")
    b.add(stat_panel(
        "Outliers", "Nodes the judge flagged on their latest burn-in.",
        [Q(f"sum(gpufleet_burnin_outlier{{{_COHORT}}}) or vector(0)")],
        thresholds=((None, "green"), (1.0, "red")),
    ), 4, 6)  # fmt: skip
    b.add(stat_panel(
        "Cohort median busbw", "Median of the nodes' latest results, per cohort.",
        [Q(MEDIAN, "{{cohort}}")], "Bps", thresholds=((None, "blue"),), name_and_value=True,
    ), 10, 6)  # fmt: skip
    b.add(table_panel(
        "Flagged nodes", "Nodes whose latest burn-in the judge flagged (below the SKU floor, "
        "or below the cohort median by more than k·MAD).",
        [Q(f"gpufleet_burnin_outlier{{{_COHORT}}} == 1")],
    ), 10, 6)  # fmt: skip
    b.row("Nodes against the cohort median")
    b.add(bargauge_panel(
        "Bus bandwidth / cohort median", "Each node's latest busbw as a share of its cohort's "
        "median, lowest first.",
        [Q(f"sort({BUSBW} / on(cohort) group_left {MEDIAN})", "{{node}}")], "percentunit",
        thresholds=((None, "red"), (0.9, "orange"), (0.97, "green")),
    ), 12, 12)  # fmt: skip
    b.add(timeseries_panel(
        "Bus bandwidth per node", "Each node's latest result over time, and the cohort median.",
        [Q(BUSBW, "{{node}}"), Q(MEDIAN, "median {{cohort}}")], "Bps", min_value=0,
    ), 12, 12)  # fmt: skip
    b.add(table_panel(
        "Evidence age", "Seconds since each node's latest burn-in finished, oldest first.",
        [Q("sort_desc(time() - gpufleet_burnin_timestamp_seconds)")], "s",
    ), 24, 8)  # fmt: skip
    return b.build()
