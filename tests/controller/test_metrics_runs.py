"""The supervisor's run metrics on a fresh ControllerMetrics, fed real RunRecords that a fake
supervisor mutates the way the supervisor's loop does (steps from rank 0, restarts with their
incidents, the end of the run); read back with `get_sample_value` and over HTTP."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings, strategies as st

from controller.metrics import ControllerMetrics, serve_metrics
from controller.metrics_runs import TIME_KINDS, ledger_seconds
from controller.supervisor.decide import RunState
from controller.supervisor.ledger import Incident, StepRecord
from controller.supervisor.placement import Placement
from controller.supervisor.record import RunRecord
from controller.supervisor.spec import RunSpec

T0 = 1_000.0


def new_record(name: str = "r1", created_at: float = T0) -> RunRecord:
    spec = RunSpec(name=name, command=("train",), ranks_per_node=1, world_size=1, ep_size=1,
                   checkpoint_dir="ckpt")
    return RunRecord(spec, Placement((), {}), {}, created_at)


@dataclass
class FakeSupervisor:
    """Holds runs and a clock; mutates records as `Supervisor._progress/_restart/_finish`."""

    now: float = T0
    runs: dict[str, RunRecord] = field(default_factory=dict)

    def start(self, name: str = "r1") -> RunRecord:
        record = self.runs[name] = new_record(name, self.now)
        record.attempt, record.state = 1, RunState.STARTING
        return record

    def step(self, record: RunRecord, step: int, seconds: float) -> None:
        self.now += seconds
        if record.incidents and record.incidents[-1].resumed_at is None:
            last = record.incidents[-1]
            record.incidents[-1] = Incident(last.fault_at, last.detected_at, self.now - seconds)
        record.steps.append(StepRecord(record.attempt, step, self.now, seconds))
        record.step, record.step_time_s = step, seconds

    def restart(self, record: RunRecord, detection_s: float = 0.5) -> None:
        self.now += detection_s
        record.incidents.append(Incident(self.now - detection_s, self.now, None))
        record.restarts += 1
        record.attempt += 1

    def end(self, record: RunRecord) -> None:
        record.ended_at, record.state = self.now, RunState.COMPLETED


@pytest.fixture
def sup() -> FakeSupervisor:
    return FakeSupervisor()


def bound(sup: FakeSupervisor, **kw: float) -> ControllerMetrics:
    metrics = ControllerMetrics()
    metrics.bind_runs(lambda: sup.runs, lambda: sup.now, **({"ledger_every_s": 0.0} | kw))
    return metrics


def value(metrics: ControllerMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def time_split(metrics: ControllerMetrics, run: str = "r1") -> dict[str, float | None]:
    return {k: value(metrics, "gpufleet_run_time_seconds", run=run, kind=k) for k in TIME_KINDS}


def test_a_run_is_exported_from_its_start_with_counters_at_zero(sup: FakeSupervisor) -> None:
    metrics = bound(sup)
    sup.start()
    sup.now += 30

    assert value(metrics, "gpufleet_run_restarts_total", run="r1") == 0
    assert value(metrics, "gpufleet_run_step_duration_seconds_count", run="r1") == 0
    assert value(metrics, "gpufleet_run_step", run="r1") == 0
    assert time_split(metrics) == {"productive": 0, "recomputed": 0, "detection": 0,
                                   "restart": 0, "other": 30}
    assert value(metrics, "gpufleet_run_goodput_ratio", run="r1") == 0
    assert value(metrics, "gpufleet_run_step_energy_joules", run="r1") is None  # no energy


def test_unbound_run_families_are_empty() -> None:
    metrics = ControllerMetrics()

    assert value(metrics, "gpufleet_run_step", run="r1") is None
    family = next(f for f in metrics.registry.collect() if f.name == "gpufleet_run_step")
    assert family.samples == []


def test_every_step_is_observed_once_in_the_histogram(sup: FakeSupervisor) -> None:
    metrics = bound(sup)
    record = sup.start()
    for step, seconds in enumerate((0.3, 0.3, 5.0), start=1):
        sup.step(record, step, seconds)
    value(metrics, "gpufleet_run_step", run="r1")  # a scrape in between observes nothing twice

    assert value(metrics, "gpufleet_run_step_duration_seconds_count", run="r1") == 3
    assert value(metrics, "gpufleet_run_step_duration_seconds_sum", run="r1") == pytest.approx(5.6)
    assert value(metrics, "gpufleet_run_step_duration_seconds_bucket", run="r1", le="0.5") == 2
    assert value(metrics, "gpufleet_run_step_duration_seconds_bucket", run="r1", le="8.0") == 3
    assert value(metrics, "gpufleet_run_step", run="r1") == 3


def test_restarts_and_the_ledger_after_a_rollback(sup: FakeSupervisor) -> None:
    metrics = bound(sup)
    record = sup.start()
    sup.now += 2  # start-up: other
    for step in (1, 2, 3, 4):
        sup.step(record, step, 1.0)
    sup.restart(record, detection_s=0.5)
    sup.now += 1.5  # stop, relaunch, load the step-2 checkpoint
    for step in (3, 4, 5):
        sup.step(record, step, 1.0)

    assert value(metrics, "gpufleet_run_restarts_total", run="r1") == 1
    assert time_split(metrics) == pytest.approx({"productive": 5.0, "recomputed": 2.0,
                                                 "detection": 0.5, "restart": 1.5, "other": 2.0})
    assert value(metrics, "gpufleet_run_goodput_ratio", run="r1") == pytest.approx(5 / 11)
    assert value(metrics, "gpufleet_run_step_duration_seconds_count", run="r1") == 7


def test_the_time_split_can_shrink_so_it_is_a_gauge(sup: FakeSupervisor) -> None:
    metrics = bound(sup)
    record = sup.start()
    sup.step(record, 1, 1.0)
    sup.step(record, 2, 3.0)  # a slow step 2 ...
    before = time_split(metrics)
    sup.restart(record)
    sup.step(record, 2, 1.0)  # ... executed again, faster
    after = time_split(metrics)

    assert before["productive"] == 4.0 and after["productive"] == 2.0
    assert after["recomputed"] == 3.0
    assert sum(v or 0.0 for v in after.values()) == pytest.approx(sup.now - T0)


def test_energy_per_productive_step(sup: FakeSupervisor) -> None:
    metrics = bound(sup)
    record = sup.start()
    for t in range(0, 11):  # one GPU drawing 100 W: 100 J a second, in mJ
        record.add_energy("n1/gpu0", T0 + t, 100_000.0 * t)
    for step in range(1, 6):
        sup.step(record, step, 2.0)

    assert value(metrics, "gpufleet_run_step_energy_joules", run="r1") == pytest.approx(200.0)


def test_an_ended_run_stays_for_retain_s_then_its_series_go(sup: FakeSupervisor) -> None:
    metrics = bound(sup, retain_s=60.0)
    record = sup.start()
    sup.step(record, 1, 1.0)
    sup.end(record)
    sup.now += 60

    assert value(metrics, "gpufleet_run_step", run="r1") == 1
    assert value(metrics, "gpufleet_run_restarts_total", run="r1") == 0
    sup.now += 1
    names = {"gpufleet_run_step", "gpufleet_run_step_duration_seconds",
             "gpufleet_run_restarts", "gpufleet_run_time_seconds", "gpufleet_run_goodput_ratio"}
    left = [s for f in metrics.registry.collect() if f.name in names for s in f.samples]
    assert left == []


def test_a_new_record_under_the_same_name_starts_new_series(sup: FakeSupervisor) -> None:
    metrics = bound(sup)
    old = sup.start()
    sup.step(old, 1, 1.0)
    sup.restart(old)
    sup.step(old, 1, 1.0)
    sup.end(old)
    assert value(metrics, "gpufleet_run_restarts_total", run="r1") == 1

    new = sup.start()  # the operator starts the run again: a new record
    sup.step(new, 1, 1.0)

    assert value(metrics, "gpufleet_run_restarts_total", run="r1") == 0  # a counter reset
    assert value(metrics, "gpufleet_run_step_duration_seconds_count", run="r1") == 1


def test_a_running_runs_ledger_is_rebuilt_at_most_every_ledger_every_s(
    sup: FakeSupervisor,
) -> None:
    metrics = bound(sup, ledger_every_s=10.0)
    record = sup.start()
    sup.step(record, 1, 1.0)
    assert value(metrics, "gpufleet_run_time_seconds", run="r1", kind="productive") == 1.0

    sup.step(record, 2, 1.0)
    assert value(metrics, "gpufleet_run_time_seconds", run="r1", kind="productive") == 1.0
    assert value(metrics, "gpufleet_run_step", run="r1") == 2  # not throttled
    sup.end(record)  # the final ledger is taken at once
    assert value(metrics, "gpufleet_run_time_seconds", run="r1", kind="productive") == 2.0


def test_runs_are_served_on_metrics_over_http(sup: FakeSupervisor) -> None:
    metrics = bound(sup)
    record = sup.start("r-http")
    sup.step(record, 7, 0.2)
    server = serve_metrics(metrics, "127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            text = r.read().decode()
    finally:
        server.close()

    assert 'gpufleet_run_step{run="r-http"} 7.0' in text
    assert 'gpufleet_run_step_duration_seconds_bucket{le="0.25",run="r-http"} 1.0' in text
    assert 'gpufleet_run_restarts_total{run="r-http"} 0.0' in text
    assert "# TYPE gpufleet_run_time_seconds gauge" in text


# ---------------------------------------------------------------- the monotonic property

Op = tuple[str, float]
OPS = st.lists(st.one_of(
    st.tuples(st.just("step"), st.floats(0.01, 200.0)),
    st.tuples(st.just("rollback"), st.floats(0.0, 5.0)),  # restart, resume 1-3 steps back
    st.tuples(st.just("wait"), st.floats(0.0, 30.0)),
    st.tuples(st.just("scrape"), st.just(0.0)),
), max_size=40)


Key = tuple[str, tuple[tuple[str, str], ...]]


def counters(metrics: ControllerMetrics) -> dict[Key, float]:
    """Every counter-like sample: restarts, and the histogram's buckets, count and sum."""
    out = {}
    for family in metrics.registry.collect():
        if family.name in ("gpufleet_run_restarts", "gpufleet_run_step_duration_seconds"):
            for s in family.samples:
                if not s.name.endswith("_created"):
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@settings(max_examples=60, deadline=None)
@given(ops=OPS, throttle=st.sampled_from([0.0, 10.0]))
def test_counters_never_go_down_and_the_ledger_is_exported_as_it_is(
    ops: list[Op], throttle: float,
) -> None:
    sup = FakeSupervisor()
    metrics = bound(sup, ledger_every_s=throttle)
    record = sup.start()
    previous: dict[Key, float] = {}
    for op, x in [*ops, ("scrape", 0.0)]:
        if op == "step":
            sup.step(record, record.step + 1, x)
        elif op == "rollback":
            sup.restart(record, detection_s=x)
            record.step = max(0, record.step - 1 - int(x) % 3)
        elif op == "wait":
            sup.now += x
        now = counters(metrics)
        for key, v in previous.items():
            assert now[key] >= v, key
        previous = now

    assert value(metrics, "gpufleet_run_restarts_total", run="r1") == record.restarts
    assert value(metrics, "gpufleet_run_step_duration_seconds_count", run="r1") == len(
        record.steps)
    inf: Key = ("gpufleet_run_step_duration_seconds_bucket", (("le", "+Inf"), ("run", "r1")))
    assert previous[inf] == len(record.steps)
    sup.end(record)  # the final ledger, exported as the supervisor's ledger has it
    ledger = record.ledger(sup.now)
    assert time_split(metrics) == pytest.approx(ledger_seconds(ledger))
    assert value(metrics, "gpufleet_run_goodput_ratio", run="r1") == pytest.approx(ledger.goodput)
