"""The run's energy account: counters binned in time, bounded whatever the GPU count."""

from __future__ import annotations

import json

import pytest

from controller.supervisor.energy import EnergyAccount


def test_growth_is_spread_evenly_between_readings() -> None:
    account = EnergyAccount()
    account.add("g0", 10.0, 5e9)  # the first reading is the baseline
    account.add("g0", 14.0, 5e9 + 400_000.0)  # 400 J over 4 s: 100 W
    assert account.total_j == pytest.approx(400.0)
    assert account.between(10.0, 14.0) == pytest.approx(400.0)
    assert account.between(11.5, 12.0) == pytest.approx(50.0)  # a part of one bucket
    assert account.between(0.0, 10.0) == 0.0 and account.between(14.0, 99.0) == 0.0


def test_replays_resets_and_long_gaps_attribute_nothing() -> None:
    account = EnergyAccount(max_gap_s=60.0)
    account.add("g0", 0.0, 1_000.0)
    account.add("g0", 1.0, 101_000.0)  # +100 J
    account.add("g0", 1.0, 999_999.0)  # the same reading again (a replay): ignored
    account.add("g0", 0.5, 50_000.0)  # out of order: ignored
    account.add("g0", 2.0, 10.0)  # the counter went back (driver reload): a new baseline
    account.add("g0", 3.0, 100_010.0)  # +100 J
    account.add("g0", 500.0, 9e9)  # 497 s later: longer than max_gap_s, not attributed
    assert account.total_j == pytest.approx(200.0)


def test_buckets_stay_bounded_and_coarsening_keeps_every_joule() -> None:
    account = EnergyAccount(max_bins=64)
    for gpu in range(8192):  # the 671B run's GPU count: one reading each per second
        account.add(f"n{gpu // 4}/gpu{gpu % 4}", 0.0, 0.0)
    for t in range(1, 301):
        for gpu in range(0, 8192, 512):  # a sample of GPUs, to keep the test quick
            account.add(f"n{gpu // 4}/gpu{gpu % 4}", float(t), 700_000.0 * t)  # 700 W
    assert len(account.bins) <= 64 and account.bucket_s > 1.0
    assert account.total_j == pytest.approx(16 * 700.0 * 300)
    assert account.between(0.0, 1000.0) == pytest.approx(account.total_j)  # whole buckets
    assert account.between(0.0, 150.0) == pytest.approx(account.total_j / 2, rel=0.05)


def test_a_compact_copy_round_trips_through_json() -> None:
    account = EnergyAccount()
    for t in range(0, 1000):
        account.add("g0", float(t), 1000.0 * t * t)  # growing power
    small = account.coarsened(100)
    assert len(small.bins) <= 100 and len(account.bins) == 999  # the original is untouched
    back = EnergyAccount.from_json(json.loads(json.dumps(small.to_json())))
    assert back.total_j == account.total_j and back.last == account.last
    assert back.between(0.0, 1024.0) == pytest.approx(account.total_j)  # whole buckets
    back.add("g0", 1000.0, 1000.0 * 1000 * 1000)  # and it goes on from the last reading
    assert back.total_j == pytest.approx(account.total_j + (1e9 - 1000.0 * 999 * 999) / 1000)
    with pytest.raises(ValueError, match="bucket width"):
        EnergyAccount.from_json({**small.to_json(), "bucket_s": 0})
