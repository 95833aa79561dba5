"""Background upkeep: run an async job every N seconds, logging (not dying on) failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    """Tasks that each call a job on an interval until `stop()`."""

    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, interval_s: float, job: Callable[[], Awaitable[object]], name: str) -> None:
        """Call `job` every `interval_s` seconds (not at all when the interval is <= 0)."""
        if interval_s > 0:
            self._tasks.append(asyncio.get_running_loop().create_task(
                self._loop(interval_s, job, name), name=name))

    async def stop(self) -> None:
        """Cancel every task and wait for them."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    @staticmethod
    async def _loop(interval_s: float, job: Callable[[], Awaitable[object]], name: str) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:  # upkeep must outlive a bad round (disk full, locked DB, ...)
                log.exception("%s failed; retrying in %g s", name, interval_s)
