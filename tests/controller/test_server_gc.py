"""GC tuning: the pure schedule, and the tuner really freezing and giving the heap back."""

from __future__ import annotations

import asyncio
import gc

import pytest

from controller.server.gc_tuning import GcSettings, GcTuner, when_due
from gpufleet_common.clock import FakeClock


@pytest.mark.parametrize(("now", "last_freeze", "last_full", "expected"), [
    (100.0, 95.0, 0.0, None),
    (100.0, 90.0, 0.0, "freeze"),
    (2000.0, 1995.0, 100.0, "full"),
    (2000.0, 1000.0, 100.0, "full"),  # a due full collection wins over a freeze
])
def test_schedule(now: float, last_freeze: float, last_full: float, expected: str | None) -> None:
    assert when_due(now, last_freeze, last_full, GcSettings(10.0, 1800.0)) == expected


def test_zero_intervals_mean_never() -> None:
    assert when_due(1e9, 0.0, 0.0, GcSettings(0.0, 0.0)) is None
    assert when_due(1e9, 0.0, 0.0, GcSettings(10.0, 0.0)) == "freeze"


async def test_tuner_freezes_on_schedule_and_unfreezes_on_stop() -> None:
    clock = FakeClock()
    tuner = GcTuner(GcSettings(freeze_interval_s=0.04, full_interval_s=0.2), clock)
    keep = [[i] for i in range(1000)]  # survivors to be frozen
    try:
        tuner.start()
        assert tuner.freezes == 1 and gc.get_freeze_count() >= len(keep)
        for _ in range(50):
            clock.advance(0.02)
            await asyncio.sleep(0.01)
            if tuner.fulls:
                break
        assert tuner.freezes > 1 and tuner.fulls >= 1
    finally:
        await tuner.stop()
    assert gc.get_freeze_count() == 0
    assert keep


async def test_disabled_tuner_leaves_the_gc_alone() -> None:
    tuner = GcTuner(GcSettings(0.0, 0.0), FakeClock())
    tuner.start()
    assert tuner.freezes == 0 and gc.get_freeze_count() == 0
    await tuner.stop()
