"""The ingest pipeline: a bounded queue, one writer task, one transaction per batch.

Stream handlers `submit` validated durable messages; when the queue is full they wait, so a
flood slows the senders down (HTTP/2 flow control) instead of growing memory. The writer takes
whatever is queued (up to `max_batch`, lingering `linger_s` when the batch is small), stores it
on the writer thread in one transaction together with the lifecycle moves it causes, and only
then hands the result to `on_commit` (which acknowledges).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from controller.fleet.lifecycle import NodeState
from controller.store import FleetStore, Inbound, StoredBatch, TransitionRow
from gpufleet_common.clock import Clock

from .decisions import Move, may_move, moves_for_batch
from .store_worker import StoreWorker

log = logging.getLogger(__name__)


@dataclass
class Committed:
    """One committed batch: its messages, what the store did, the moves applied."""

    items: list[Inbound]
    batch: StoredBatch
    transitions: list[tuple[Move, TransitionRow]] = field(default_factory=list)
    committed_mono: float = 0.0


def commit_batch(
    store: FleetStore, items: list[Inbound], unreachable: frozenset[str], clock: Clock
) -> Committed:
    """Store `items` and apply the lifecycle moves they cause, in one transaction.

    Runs on the writer thread. `unreachable` is the service's view of which nodes are
    unreachable (a message from one restores it), so node states are read only for nodes
    whose messages may move them.
    """
    committed = Committed(items, StoredBatch())

    def after(batch: StoredBatch) -> None:
        nodes = {i.node for i in batch.stored if may_move(i) or i.node in unreachable}
        if not nodes:
            return
        states = {name: NodeState(state) for name, state in store.states(nodes).items()}
        at = clock.time()
        for move in moves_for_batch(states, batch.stored):
            row = store.record_transition(
                move.node, move.from_state, move.to_state, cause=move.cause,
                actor="controller", at=at, evidence_id=move.evidence_id,
            )
            committed.transitions.append((move, row))

    committed.batch = store.store_batch(items, after=after)
    committed.committed_mono = clock.monotonic()
    return committed


class IngestPipeline:
    """Bounded queue -> batched commits -> `on_commit` callbacks, in arrival order."""

    def __init__(
        self,
        writer: StoreWorker,
        clock: Clock,
        *,
        on_commit: Callable[[Committed], None],
        on_failure: Callable[[list[Inbound], BaseException], None],
        unreachable: Callable[[], frozenset[str]] = frozenset,
        max_queue: int = 8192,
        max_batch: int = 1024,
        linger_s: float = 0.002,
    ) -> None:
        if max_queue < 1 or max_batch < 1 or linger_s < 0:
            raise ValueError("max_queue and max_batch must be >= 1 and linger_s >= 0")
        self._writer = writer
        self._clock = clock
        self._on_commit = on_commit
        self._on_failure = on_failure
        self._unreachable = unreachable
        self._queue: asyncio.Queue[Inbound] = asyncio.Queue(maxsize=max_queue)
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._poisoned: set[int] = set()
        self.batches = 0
        self.dropped = 0

    def depth(self) -> int:
        """Messages queued or being committed."""
        return self._queue.qsize() + self._in_flight

    async def submit(self, item: Inbound) -> None:
        """Queue `item` for storage; waits while the queue is full (back-pressure)."""
        await self._queue.put(item)

    def start(self) -> None:
        """Start the writer task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ingest")

    async def flush(self, timeout_s: float) -> bool:
        """Wait (bounded) until nothing is queued or being committed; True if so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.depth() and loop.time() < deadline:
            await asyncio.sleep(0.005)
        return not self.depth()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Commit what is queued (bounded by `timeout_s`), then stop the writer task."""
        if self._task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.depth() and loop.time() < deadline and not self._task.done():
            await asyncio.sleep(0.01)
        if self.depth():
            log.warning("stopping with %d messages not stored (they stay spooled on agents)",
                        self.depth())
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    def _take(self, batch: list[Inbound]) -> None:
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                return

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            self._take(batch)
            self._in_flight = len(batch)  # counted from the moment it leaves the queue
            if len(batch) < self._max_batch and self._linger_s > 0:
                await asyncio.sleep(self._linger_s)
                self._take(batch)
            if self._poisoned:
                kept = [i for i in batch if i.stream not in self._poisoned]
                self.dropped += len(batch) - len(kept)
                if self._queue.empty():  # nothing of a poisoned stream can still arrive
                    self._poisoned.clear()
                if not kept:
                    self._in_flight = 0
                    continue
                batch = kept
            self._in_flight = len(batch)
            unreachable = self._unreachable()
            try:
                committed = await self._writer.call(
                    partial(commit_batch, items=batch, unreachable=unreachable, clock=self._clock)
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store failure must not kill ingest
                log.exception("storing a batch of %d messages failed", len(batch))
                # Later messages of these streams must not be stored either: a gap below a
                # stored seq would be covered by the next cumulative ack (or Welcome) and lost.
                # The streams are ended; their agents replay from what is really stored.
                self._poisoned.update(item.stream for item in batch)
                self._in_flight = 0
                self._on_failure(batch, exc)
                continue
            self._in_flight = 0
            self.batches += 1
            try:
                self._on_commit(committed)
            except Exception:
                log.exception("post-commit handling failed")
