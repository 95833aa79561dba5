"""Training run: progress, step time, restarts, where the lost time went, goodput, energy per
step. Every series here comes from the supervisor, served on the controller's /metrics."""

from __future__ import annotations

from typing import Any

from dashboards.grafana import Board, Q, query_variable, stat_panel, timeseries_panel
from dashboards.queries import RATE

UID = "gpufleet-training-run"
_RUN = 'run=~"$run"'
LOST_KINDS = "recomputed|detection|restart|other"


def build() -> dict[str, Any]:
    """The dashboard JSON."""
    b = Board(
        "gpufleet / Training run",
        UID,
        "A run's progress and step time, restarts, lost time by cause, goodput and energy per "
        "step (from the supervisor's goodput ledger).",
        ["run"],
    )
    b.variable(query_variable("run", "Run", "label_values(gpufleet_run_step, run)"))
    _summary(b)
    _steps(b)
    _lost_time(b)
    return b.build()


def _summary(b: Board) -> None:
    b.row("Summary")
    b.add(stat_panel(
        "Step", "Latest completed step.", [Q(f"gpufleet_run_step{{{_RUN}}}", "{{run}}")],
        name_and_value=True,
    ), 6, 5)  # fmt: skip
    b.add(stat_panel(
        "Goodput", "Productive share of the run's wall time so far.",
        [Q(f"gpufleet_run_goodput_ratio{{{_RUN}}}", "{{run}}")], "percentunit",
        thresholds=((None, "red"), (0.8, "orange"), (0.9, "green")), name_and_value=True,
    ), 6, 5)  # fmt: skip
    b.add(stat_panel(
        "Restarts", "Restarts from checkpoint since the run started.",
        [Q(f"gpufleet_run_restarts_total{{{_RUN}}}", "{{run}}")],
        thresholds=((None, "green"), (1.0, "orange"), (3.0, "red")), name_and_value=True,
    ), 6, 5)  # fmt: skip
    b.add(stat_panel(
        "Energy per step", "GPU energy per productive step.",
        [Q(f"gpufleet_run_step_energy_joules{{{_RUN}}}", "{{run}}")], "joule",
        thresholds=((None, "blue"),), name_and_value=True,
    ), 6, 5)  # fmt: skip


def _steps(b: Board) -> None:
    b.row("Steps")
    bucket = f"gpufleet_run_step_duration_seconds_bucket{{{_RUN}}}"
    b.add(timeseries_panel(
        "Step time", "Quantiles of completed steps' wall time, and the mean.",
        [*(Q(f"histogram_quantile({q}, sum by (run, le) (rate({bucket}[{RATE}])))",
             f"{{{{run}}}} p{int(q * 100)}") for q in (0.5, 0.9, 0.99)),
         Q(f"sum by (run) (rate(gpufleet_run_step_duration_seconds_sum{{{_RUN}}}[{RATE}])) / "
           f"sum by (run) (rate(gpufleet_run_step_duration_seconds_count{{{_RUN}}}[{RATE}]))",
           "{{run}} mean")],
        "s", min_value=0,
    ), 12)  # fmt: skip
    b.add(timeseries_panel(
        "Steps per second", "Completed steps per second (recomputed steps included).",
        [Q(f"sum by (run) (rate(gpufleet_run_step_duration_seconds_count{{{_RUN}}}[{RATE}]))",
           "{{run}}")], "ops", min_value=0,
    ), 12)  # fmt: skip
    b.add(timeseries_panel(
        "Energy per step", "", [Q(f"gpufleet_run_step_energy_joules{{{_RUN}}}", "{{run}}")],
        "joule", min_value=0,
    ), 12)  # fmt: skip
    b.add(timeseries_panel(
        "Restarts per hour", "",
        [Q(f"increase(gpufleet_run_restarts_total{{{_RUN}}}[1h])", "{{run}}")], min_value=0,
    ), 12)  # fmt: skip


def _lost_time(b: Board) -> None:
    b.row("Goodput and lost time")
    # a gauge: the ledger re-splits the wall time as the run goes on (see the contract)
    time_by_kind = f"gpufleet_run_time_seconds{{{_RUN}}}"
    productive = f'gpufleet_run_time_seconds{{{_RUN}, kind="productive"}}'
    b.add(timeseries_panel(
        "Where the wall time goes",
        "Share of the run's wall time so far by kind: productive, recomputed (steps redone "
        "after a rollback), detection (fault to noticed), restart (noticed to resumed), other.",
        [Q(f"sum by (run, kind) ({time_by_kind}) / ignoring(kind) group_left "
           f"sum by (run) ({time_by_kind})", "{{run}} {{kind}}")],
        "percentunit", stacked=True, min_value=0, max_value=1,
    ), 12)  # fmt: skip
    b.add(timeseries_panel(
        "Lost time (cumulative)", "Seconds of wall time that did not produce a surviving step.",
        [Q(f'sum by (run, kind) (gpufleet_run_time_seconds{{{_RUN}, kind=~"{LOST_KINDS}"}})',
           "{{run}} {{kind}}")], "s", stacked=True, min_value=0,
    ), 12)  # fmt: skip
    b.add(timeseries_panel(
        "Goodput", "Over the whole run (ledger), and over the last hour.",
        [Q(f"gpufleet_run_goodput_ratio{{{_RUN}}}", "{{run}} run"),
         Q(f"sum by (run) (delta({productive}[1h])) / sum by (run) (delta({time_by_kind}[1h]))",
           "{{run}} last hour")],
        "percentunit", min_value=0, max_value=1,
    ), 24)  # fmt: skip
