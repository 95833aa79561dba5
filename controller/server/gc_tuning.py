"""Keep Python's cyclic GC from pausing ingest for hundreds of milliseconds.

With thousands of agent streams the heap holds several hundred thousand long-lived objects
(about a hundred per stream, most of them gRPC's), and every pending read promotes more, so a
full collection walks them all: 100-350 ms with the event loop stopped, which alone breaks a
50 ms p99. The tuner periodically collects the young generations and freezes what survived
(`gc.freeze()`), so routine collections only walk recent objects; every `full_interval_s` it
unfreezes and runs one full collection to reclaim cycles among objects that died after being
frozen (e.g. closed streams). `when_due` is the pure schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass

from gpufleet_common.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GcSettings:
    """How often to freeze survivors and to run a full collection (0 = never)."""

    freeze_interval_s: float = 10.0
    full_interval_s: float = 1800.0


def when_due(now: float, last_freeze: float, last_full: float,
             settings: GcSettings) -> str | None:
    """What the tuner should do at `now`: "full", "freeze" or nothing."""
    if settings.full_interval_s > 0 and now - last_full >= settings.full_interval_s:
        return "full"
    if settings.freeze_interval_s > 0 and now - last_freeze >= settings.freeze_interval_s:
        return "freeze"
    return None


class GcTuner:
    """Runs the schedule on the event loop; `stop()` unfreezes, leaving the process as found."""

    def __init__(self, settings: GcSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self.freezes = 0
        self.fulls = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Freeze what start-up created and begin the schedule."""
        if self.settings.freeze_interval_s <= 0 or self._task is not None:
            return
        self._freeze()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="gc-tuner")

    async def stop(self) -> None:
        """Stop the schedule and unfreeze."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        gc.unfreeze()

    def _freeze(self) -> None:
        gc.collect(1)
        gc.freeze()
        self.freezes += 1

    def _full(self) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.fulls += 1
        log.info("full GC: %d unreachable objects in %.0f ms", found,
                 (time.perf_counter() - started) * 1e3)

    async def _run(self) -> None:
        now = self._clock.monotonic()
        last_freeze = last_full = now
        tick = min(s for s in (self.settings.freeze_interval_s, self.settings.full_interval_s)
                   if s > 0) / 4
        while True:
            await asyncio.sleep(tick)
            now = self._clock.monotonic()
            action = when_due(now, last_freeze, last_full, self.settings)
            if action == "full":
                self._full()
                last_full = last_freeze = now
            elif action == "freeze":
                self._freeze()
                last_freeze = now
