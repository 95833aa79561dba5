"""Per-run supervisor metrics, refreshed at scrape time from the supervisor's RunRecords.

A run is exported from the moment the supervisor holds its record (counters and the step
histogram at 0, so `increase()` sees the first restart) until `retain_s` after it ended.
The supervisor's loop mutates records on the event loop thread while a scrape runs on the
HTTP server's thread, so everything is read from copies taken in single C-level operations
(`dict(...)`, `list(...)`, slices), never by iterating a live container.

- gpufleet_run_step{run}: the latest completed step (rank 0's report).
- gpufleet_run_step_duration_seconds{run}: rank 0's step_time_s of each completed step,
  observed once each: a cursor per run walks the record's step list.
- gpufleet_run_restarts_total{run}: the record's restarts, raised by the difference since the
  last scrape (a counter never goes down; a new record under the same name starts a new
  series, which Prometheus reads as a counter reset).
- gpufleet_run_time_seconds{run,kind}, gpufleet_run_goodput_ratio{run},
  gpufleet_run_step_energy_joules{run}: the goodput ledger. `time_seconds` is a gauge: the
  ledger moves seconds between kinds as the run goes on. The ledger is rebuilt at most every
  `ledger_every_s` per running run (its energy account grows with steps × GPUs × samples)
  and once more, final, when the run ends.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from controller.supervisor.ledger import Ledger, build_ledger
from controller.supervisor.record import RunRecord

STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
TIME_KINDS = ("productive", "recomputed", "detection", "restart", "other")
RETAIN_S = 3600.0
LEDGER_EVERY_S = 10.0

RunsSource = Callable[[], Mapping[str, RunRecord]]


def _no_runs() -> Mapping[str, RunRecord]:
    return {}


@dataclass(frozen=True)
class RunFamilies:
    """The metric objects the run families are kept in."""

    step: Gauge
    step_duration: Histogram
    restarts: Counter
    time: Gauge
    goodput: Gauge
    step_energy: Gauge


def ledger_of(record: RunRecord, now: float) -> Ledger:
    """`record.ledger(now)`, computed from copies of the record's lists (thread-safe)."""
    energy = record.energy.coarsened(record.energy.max_bins)
    return build_ledger(record.created_at, record.ended_at or now, list(record.steps),
                        list(record.incidents), energy, record.spec.tokens_per_step)


def ledger_seconds(ledger: Ledger) -> dict[str, float]:
    """The ledger's wall time by kind (the kinds sum to its wall time)."""
    return {"productive": ledger.productive_s, "recomputed": ledger.recomputed_s,
            "detection": ledger.detection_s, "restart": ledger.restart_s,
            "other": ledger.other_s}


def _remove(family: MetricWrapperBase, *labels: str) -> None:
    """Remove a series if it exists (older prometheus_client raise KeyError otherwise)."""
    with contextlib.suppress(KeyError):
        family.remove(*labels)


@dataclass
class _Tracked:
    """What has been exported of one record so far."""

    record: RunRecord
    steps_seen: int = 0
    restarts_seen: int = 0
    ledger_at: float = -math.inf
    final: bool = False


class RunSync:
    """Writes the supervisor's runs into the run families (a ScrapeTime refresh)."""

    def __init__(self, families: RunFamilies) -> None:
        self.families = families
        self.runs: RunsSource = _no_runs
        self.now: Callable[[], float] = lambda: 0.0
        self.retain_s = RETAIN_S
        self.ledger_every_s = LEDGER_EVERY_S
        self._tracked: dict[str, _Tracked] = {}

    def __call__(self) -> None:
        now = self.now()
        runs = dict(self.runs())
        live = {name: r for name, r in runs.items()
                if not r.ended_at or now - r.ended_at <= self.retain_s}
        for name in [n for n, t in self._tracked.items() if live.get(n) is not t.record]:
            self._drop(name)
        for name, record in sorted(live.items()):
            tracked = self._tracked.get(name)
            if tracked is None:
                tracked = self._tracked[name] = self._start(name, record)
            self._update(name, tracked, now)

    def _start(self, name: str, record: RunRecord) -> _Tracked:
        self.families.restarts.labels(name)  # at 0 before the first restart
        self.families.step_duration.labels(name)
        return _Tracked(record)

    def _drop(self, name: str) -> None:
        del self._tracked[name]
        f = self.families
        for family in (f.step, f.step_duration, f.restarts, f.goodput, f.step_energy):
            _remove(family, name)
        for kind in TIME_KINDS:
            _remove(f.time, name, kind)

    def _update(self, name: str, t: _Tracked, now: float) -> None:
        f, record = self.families, t.record
        steps = record.steps[t.steps_seen:]
        duration = f.step_duration.labels(name)
        for s in steps:
            duration.observe(s.step_time_s)
        t.steps_seen += len(steps)
        restarts = record.restarts
        if restarts > t.restarts_seen:
            f.restarts.labels(name).inc(restarts - t.restarts_seen)
            t.restarts_seen = restarts
        f.step.labels(name).set(record.step)
        ended = bool(record.ended_at)
        if t.final or (not ended and now - t.ledger_at < self.ledger_every_s):
            return
        ledger = ledger_of(record, now)
        t.ledger_at, t.final = now, ended
        for kind, seconds in ledger_seconds(ledger).items():
            f.time.labels(name, kind).set(seconds)
        f.goodput.labels(name).set(ledger.goodput)
        if ledger.joules_per_step is None:
            _remove(f.step_energy, name)
        else:
            f.step_energy.labels(name).set(ledger.joules_per_step)
