"""Runs FleetStore calls on a dedicated thread so SQLite never blocks the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from controller.store import FleetStore

T = TypeVar("T")


class StoreWorker:
    """One FleetStore confined to one thread; `call` runs a function of it there."""

    def __init__(self, store: FleetStore, name: str) -> None:
        self._store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[[FleetStore], T]) -> T:
        """Run `fn(store)` on the store's thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self._store)

    def close(self) -> None:
        """Finish queued calls, close the store on its own thread, stop the thread."""
        self._pool.submit(self._store.close).result()
        self._pool.shutdown(wait=True)
