"""Goodput/energy ledger: productive vs recomputed vs detection vs restart, joules per step."""

from __future__ import annotations

import pytest

from controller.supervisor.energy import EnergyAccount
from controller.supervisor.ledger import Incident, StepRecord, build_ledger


def _steps(attempt: int, first: int, last: int, start: float, dt: float = 1.0) -> list[StepRecord]:
    return [StepRecord(attempt, s, start + (s - first + 1) * dt, dt) for s in range(first, last + 1)]


def _account(series: dict[str, list[tuple[float, float]]]) -> EnergyAccount:
    """Feed the counter readings in time order, as reports arrive."""
    account = EnergyAccount()
    for at, source, mj in sorted((t, s, e) for s, pts in series.items() for t, e in pts):
        account.add(source, at, mj)
    return account


def test_uninterrupted_run_is_all_productive_but_startup() -> None:
    ledger = build_ledger(0.0, 12.0, _steps(0, 1, 10, 2.0), [])
    assert ledger.productive_steps == 10 and ledger.recomputed_steps == 0
    assert ledger.productive_s == pytest.approx(10.0)
    assert ledger.other_s == pytest.approx(2.0)
    assert ledger.goodput == pytest.approx(10 / 12)


def test_restart_from_checkpoint_counts_recomputed_steps() -> None:
    # steps 1..7 end at t=1..7; checkpoint at 5; fault 7.5, detected 8.0, step 6 restarts at 11
    first = _steps(0, 1, 7, 0.0)
    second = _steps(1, 6, 10, 11.0)
    ledger = build_ledger(0.0, 16.0, first + second, [Incident(7.5, 8.0, 11.0)])
    assert ledger.productive_steps == 10
    assert ledger.recomputed_steps == 2  # steps 6 and 7 of attempt 0
    assert ledger.recomputed_s == pytest.approx(2.0)
    assert ledger.detection_s == pytest.approx(0.5)
    assert ledger.restart_s == pytest.approx(3.0)
    assert ledger.other_s == pytest.approx(0.5)
    total = (ledger.productive_s + ledger.recomputed_s + ledger.detection_s + ledger.restart_s
             + ledger.other_s)
    assert total == pytest.approx(ledger.wall_s)


def test_energy_per_step_and_token_from_counters() -> None:
    # two nodes, each drawing 100 W for 10 s of steps and 50 W while idle before (counters in mJ)
    def counter(offset: float) -> list[tuple[float, float]]:
        return [(0.0, offset), (2.0, offset + 100_000.0), (12.0, offset + 1_100_000.0)]

    ledger = build_ledger(0.0, 12.0, _steps(0, 1, 10, 2.0),
                          [], _account({"n0": counter(5e9), "n1": counter(7e9)}),
                          tokens_per_step=1000)
    assert ledger.energy_j == pytest.approx(2 * 1100.0)
    assert ledger.productive_energy_j == pytest.approx(2 * 1000.0)
    assert ledger.joules_per_step == pytest.approx(200.0)
    assert ledger.joules_per_token == pytest.approx(0.2)


def test_no_energy_samples_leaves_energy_unknown() -> None:
    ledger = build_ledger(0.0, 5.0, _steps(0, 1, 3, 1.0), [], _account({"n0": [(0.0, 1.0)]}))
    assert ledger.energy_j is None and ledger.joules_per_step is None


def test_energy_of_a_node_counts_only_while_it_was_in_the_run() -> None:
    # n0 runs steps 1..10 (t=2..12); the spare n1 joins at t=7 and is sampled only from there
    n0 = [(0.0, 0.0), (12.0, 1_200_000.0)]  # 100 W
    n1 = [(7.0, 5e9), (12.0, 5e9 + 500_000.0)]  # 100 W from t=7
    ledger = build_ledger(0.0, 12.0, _steps(0, 1, 10, 2.0), [], _account({"n0": n0, "n1": n1}))
    assert ledger.energy_j == pytest.approx(1200.0 + 500.0)
    assert ledger.productive_energy_j == pytest.approx(1000.0 + 500.0)


def test_back_to_back_incidents_never_count_the_same_second_twice() -> None:
    # attempt 2 fails (t=10) before its first step: its restart period ends at that fault
    steps = _steps(0, 1, 5, 0.0) + _steps(2, 4, 8, 15.0)
    incidents = [Incident(5.5, 6.0, 10.0), Incident(10.0, 10.5, 15.0)]
    ledger = build_ledger(0.0, 20.0, steps, incidents)
    total = (ledger.productive_s + ledger.recomputed_s + ledger.detection_s + ledger.restart_s
             + ledger.other_s)
    assert total == pytest.approx(ledger.wall_s)
    assert ledger.restart_s == pytest.approx(4.0 + 4.5)
