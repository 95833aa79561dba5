"""Pure burn-in judgement: SKU floor, cohort outliers by median − k·MAD, small cohorts."""

from __future__ import annotations

import pytest

from controller.burnin.judge import BurnInTarget, CohortKey, Measured, cohort_threshold, judge

H100 = CohortKey("h100_sxm", "580.95.05", "2.27.3", 8)


def _fleet(values: list[float], key: CohortKey = H100) -> list[Measured]:
    return [Measured(f"n{i}", key, v) for i, v in enumerate(values)]


def test_uniform_healthy_fleet_all_pass() -> None:
    verdicts = judge(_fleet([470, 468, 472, 469, 471, 470]))
    assert all(v.passed and v.severity == "ok" for v in verdicts)


def test_slow_node_above_floor_is_flagged_by_its_cohort() -> None:
    verdicts = judge(_fleet([470, 468, 472, 469, 471, 395]))
    slow = verdicts[-1]
    assert slow.busbw_gbps > 360  # above the absolute SKU floor...
    assert not slow.passed and slow.check == "burnin_outlier"  # ...yet an outlier
    assert slow.severity == "critical"  # blocks admission: one slow node paces the run
    assert slow.cohort_median_gbps == pytest.approx(470.0)  # its peers' median
    assert all(v.passed for v in verdicts[:-1])


def test_below_floor_is_critical_even_without_a_cohort() -> None:
    (verdict,) = judge(_fleet([200]))
    assert verdict.severity == "critical" and verdict.check == "burnin_below_floor"


def test_cohorts_do_not_mix_driver_versions() -> None:
    other = CohortKey("h100_sxm", "570.10", "2.21.5", 8)
    results = [*_fleet([470, 471, 469, 470]), Measured("old", other, 400)]
    verdicts = {v.node: v for v in judge(results)}
    assert verdicts["old"].passed  # alone in its cohort: too small to call an outlier


def test_small_noise_in_a_tight_cohort_is_not_an_outlier() -> None:
    verdicts = judge(_fleet([1.00, 1.00, 1.00, 1.00, 0.95]), {"default": BurnInTarget(0.0)})
    assert all(v.passed for v in verdicts)


def test_failed_burnin_is_critical() -> None:
    (verdict,) = judge([Measured("n0", H100, 0.0, ok=False, error="timeout")])
    assert verdict.severity == "critical" and "timeout" in verdict.message


def test_threshold_needs_min_cohort() -> None:
    assert cohort_threshold([1.0], BurnInTarget(0.0, min_cohort=3)) is None  # 1 peer: too few
    assert cohort_threshold([1.0, 2.0], BurnInTarget(0.0, min_cohort=3)) is not None
    stats = cohort_threshold([10.0, 10.0, 10.0, 12.0], BurnInTarget(0.0))
    assert stats is not None
    assert stats[0] == 10.0 and stats[1] == pytest.approx(9.0)


def test_one_slow_node_in_a_noisy_cohort_of_four_is_still_caught() -> None:
    """Leave-one-out: the slow node's own value must not widen its band (seen in the demo)."""
    target = {"default": BurnInTarget(0.0)}
    key = CohortKey("gb300", "580", "", 2)
    verdicts = judge([Measured(f"n{i}", key, v) for i, v in enumerate([1.23, 1.45, 1.59, 0.312])],
                     target)
    assert [v.passed for v in verdicts] == [True, True, True, False]
    assert verdicts[3].cohort_median_gbps == pytest.approx(1.45)


def test_a_baseline_of_recent_results_gives_a_node_alone_a_cohort() -> None:
    (alone,) = judge(_fleet([400]))
    assert alone.passed and alone.cohort_median_gbps is None  # above the floor, no cohort
    (judged,) = judge(_fleet([400]), baseline={H100: [470, 468, 472]})
    assert not judged.passed and judged.check == "burnin_outlier"
    assert judged.cohort_median_gbps == pytest.approx(470.0)
    other = CohortKey("h100_sxm", "570.10", "2.21.5", 8)  # another driver: not comparable
    (apart,) = judge(_fleet([400]), baseline={other: [470, 468, 472]})
    assert apart.passed and apart.cohort_median_gbps is None


def test_a_baseline_joins_the_peers_of_every_node_judged_together() -> None:
    verdicts = judge(_fleet([470, 400]), baseline={H100: [468, 472]})
    assert [v.passed for v in verdicts] == [True, False]
    assert verdicts[1].cohort_median_gbps == pytest.approx(470.0)  # 470 (its peer), 468, 472
