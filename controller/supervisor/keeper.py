"""Keeps the supervisor's runs in the fleet database (snapshot + appended steps), and reads
them back when the controller starts. IO only; the format is `persist`'s."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from controller.store import FleetStore, StoredRun
from controller.supervisor.decide import TERMINAL, RunState
from controller.supervisor.ledger import StepRecord
from controller.supervisor.persist import CorruptRunRecord, record_from_json, record_to_json
from controller.supervisor.record import RunRecord

log = logging.getLogger(__name__)
T = TypeVar("T")
StoreCall = Callable[[Callable[[FleetStore], T]], Awaitable[T]]


class RunKeeper:
    """Saves run records through the store's writer thread; loads them through its reader."""

    def __init__(self, write: StoreCall[Any], read: StoreCall[list[StoredRun]],
                 clock_time: Callable[[], float], keep: int = 50, retain: int = 200) -> None:
        self._write = write
        self._read = read
        self._time = clock_time
        self.keep = keep  # ended runs loaded at start (the live ones always are)
        self.retain = retain  # ended runs kept in the database
        self.failures = 0
        self._lock = asyncio.Lock()  # saves of one run never interleave (steps go in once)

    async def save(self, record: RunRecord, fresh: bool = False) -> bool:
        """Write the snapshot and the steps not stored yet; False (logged) if the store failed:
        the run goes on, and the next save carries what this one missed."""
        async with self._lock:
            return await self._save(record, fresh)

    async def save_steps(self, record: RunRecord) -> bool:
        """Append the steps not stored yet (cheap: called every supervisor tick)."""
        async with self._lock:
            return await self._save_steps(record)

    async def _save(self, record: RunRecord, fresh: bool) -> bool:
        now = self._time()
        name, state, created = record.name, record.state.value, record.created_at
        attempt = record.attempt
        new = [(s.attempt, s.step, s.end_at, s.step_time_s)
               for s in record.steps[record.steps_saved:]]
        try:
            text = record_to_json(record)
            await self._write(lambda store: store.save_run(
                name, state, created, now, text, new, fresh=fresh))
        except Exception:  # never out of here: the run's watchdog must outlive its store
            self.failures += 1
            log.exception("could not save run %s", name)
            return False
        record.steps_saved += len(new)
        record.saved_at = now
        record.saved_mark = (state, attempt)
        return True

    async def _save_steps(self, record: RunRecord) -> bool:
        new = [(s.attempt, s.step, s.end_at, s.step_time_s)
               for s in record.steps[record.steps_saved:]]
        if not new:
            return True
        name = record.name
        try:
            await self._write(lambda store: store.append_run_steps(name, new))
        except Exception:
            self.failures += 1
            log.exception("could not save the steps of run %s", name)
            return False
        record.steps_saved += len(new)
        return True

    async def load(self) -> list[RunRecord]:
        """Every live stored run and the `keep` most recent ended ones, newest first; older
        ended runs beyond `retain` are deleted. A record that cannot be read back is logged
        and skipped."""
        live = [s.value for s in RunState if s not in TERMINAL]
        ended = [s.value for s in TERMINAL]
        pruned = await self._write(lambda store: store.prune_runs(live, self.retain))
        if pruned:
            log.info("deleted %d ended run(s) beyond the %d most recent", pruned, self.retain)
        rows = await self._read(lambda store: store.stored_runs(states=live)
                                + store.stored_runs(states=ended, limit=self.keep))
        rows.sort(key=lambda r: r.updated_at, reverse=True)
        out = []
        for row in rows:
            try:
                record = record_from_json(
                    row.record, [StepRecord(*s) for s in row.steps], row.name)
            except CorruptRunRecord as exc:
                log.error("%s", exc)
                continue
            record.steps_saved = len(record.steps)
            record.saved_at = row.updated_at
            record.saved_mark = (record.state.value, record.attempt)
            last = record.steps[-1] if record.steps else None
            if last is not None and last.attempt == record.attempt:  # newer than the snapshot
                record.step, record.step_time_s = last.step, last.step_time_s
            out.append(record)
        return out
