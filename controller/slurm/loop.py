"""Run the Slurm node-state sync inside the controller: on start, after every lifecycle
transition (debounced), and every `interval_s`; the Slurm commands run on a worker thread so
the event loop never waits on `scontrol`. Each pass's actions and failures are logged and kept
in `reports` (the last 100).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from controller.server.service import FleetService
from controller.slurm.reconcile import FleetNodeView
from controller.slurm.sync import SlurmNodeSync, SyncReport, fleet_view
from controller.store import FleetStore, TransitionRow

log = logging.getLogger(__name__)


def read_views(store: FleetStore) -> dict[str, FleetNodeView]:
    """Every node as reconcile sees it (state + the cause/evidence of its last move)."""
    out: dict[str, FleetNodeView] = {}
    for row in store.nodes():
        last = store.transitions(row.name, limit=1)
        out[row.name] = fleet_view(row, last[0] if last else None)
    return out


class SlurmSyncLoop:
    """The controller's side of `SlurmNodeSync`: schedules passes, records what they did."""

    def __init__(self, service: FleetService, sync: SlurmNodeSync, *,
                 tick_s: float = 1.0) -> None:
        self.service = service
        self.sync = sync
        self.tick_s = tick_s
        self.reports: list[SyncReport] = []
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        service.add_transition_listener(self._on_transition)

    def start(self) -> None:
        self._dirty.set()  # reconcile on start
        self._task = asyncio.get_running_loop().create_task(self._run(), name="slurm-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _on_transition(self, row: TransitionRow) -> None:
        self._dirty.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self.tick_s)
            if not (self._dirty.is_set() or self.sync.due()):
                continue
            self._dirty.clear()
            try:
                views = await self.service.read(read_views)
                report = await asyncio.to_thread(self.sync.sync, views)
            except Exception:  # the loop outlives any one failed pass
                log.exception("slurm sync pass failed")
                continue
            self.reports = [*self.reports[-99:], report]
            for line in report.lines():
                log.info("slurm sync: %s", line)
