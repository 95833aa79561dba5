"""FleetService: the controller's core, shared by the agent stream, the admin API and the
run supervisor.

It owns the store workers (writer and reader threads), the ingest pipeline, the live streams
and the directive hub; it applies lifecycle moves decided by the pure lifecycle, and runs the
heartbeat check. The in-memory node picture lives in `node_cache.NodeCache`, what follows a
commit (acks, metrics, directives, listeners) in `commit_effects.CommitEffects`. Everything
here runs on the event loop; SQLite work runs on the store threads.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from controller.fleet.lifecycle import NodeEvent, NodeState
from controller.metrics import ControllerMetrics
from controller.store import (
    FleetStore,
    Inbound,
    NodeRow,
    Registration,
    TransitionRow,
)
from controller.store.codec import identity_from_hello
from gpufleet_common.clock import Clock
from protos.gpufleet.v1 import fleet_pb2

from .commit_effects import CommitEffects, Delivered
from .directives import DirectiveHub, DirectiveOutcome, NotConnected
from .ingest import IngestPipeline
from .jobs import UnknownNode, command_job, heartbeat_job, register_job
from .node_cache import NodeCache
from .periodic import Periodic
from .store_worker import StoreWorker
from .streams import DirectiveBacklog, StreamRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ServiceSettings:
    """Tunables of the service (the CLI fills them from the config)."""

    controller_id: str = "gpufleet-controller"
    report_interval_s: float = 1.0
    heartbeat_timeout_s: float = 30.0
    heartbeat_check_s: float = 5.0
    queue_size: int = 8192
    max_batch: int = 1024
    batch_linger_s: float = 0.002
    report_retention_s: float = 3600.0  # raw reports kept this long (0 = forever)
    prune_interval_s: float = 60.0


class FleetService:
    """The fleet as the controller knows it, and the only way to change it."""

    def __init__(
        self,
        writer: StoreWorker,
        reader: StoreWorker,
        clock: Clock,
        metrics: ControllerMetrics,
        settings: ServiceSettings = ServiceSettings(),
    ) -> None:
        self._writer = writer
        self._reader = reader
        self.clock = clock
        self.metrics = metrics
        self.settings = settings
        self.streams = StreamRegistry()
        self.directives = DirectiveHub(clock)
        self._nodes = NodeCache(clock)
        self._effects = CommitEffects(self._nodes, self.streams, self.directives, metrics)
        self._upkeep = Periodic()
        self.pipeline = IngestPipeline(
            writer, clock, on_commit=self._effects.on_commit, on_failure=self._effects.on_failure,
            unreachable=self._nodes.unreachable, max_queue=settings.queue_size,
            max_batch=settings.max_batch, linger_s=settings.batch_linger_s,
        )
        metrics.bind_node_states(self.state_counts)
        metrics.bind_node_details(self.state_reasons, self.heartbeat_ages)
        metrics.bind_queue_depth(self.pipeline.depth)

    @classmethod
    def open(
        cls, db_path: str, clock: Clock, metrics: ControllerMetrics,
        settings: ServiceSettings = ServiceSettings(),
    ) -> FleetService:
        """A service on the database at `db_path` (created and migrated if needed)."""
        writer = StoreWorker(FleetStore.open(db_path), "store-writer")
        reader = StoreWorker(FleetStore.open(db_path, readonly=True), "store-reader")
        return cls(writer, reader, clock, metrics, settings)

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Load node states, start ingest and the heartbeat check.

        Every known node gets a full heartbeat timeout from now to reconnect, so a controller
        restart does not mark the fleet unreachable.
        """
        self._nodes.load(await self._reader.call(FleetStore.state_reasons))
        self.pipeline.start()
        self._upkeep.every(self.settings.heartbeat_check_s, self.check_heartbeats, "heartbeat")
        if self.settings.report_retention_s > 0:
            self._upkeep.every(self.settings.prune_interval_s, self.prune, "prune")

    async def stop(self) -> None:
        """Stop the heartbeat, commit what is queued, close the store threads."""
        await self._upkeep.stop()
        await self.pipeline.close()
        self._reader.close()
        self._writer.close()

    # ------------------------------------------------------------------ listeners

    def add_listener(self, callback: Callable[[Delivered], None]) -> None:
        """Call `callback` for every newly stored message and every ephemeral one."""
        self._effects.add_listener(callback)

    def add_transition_listener(self, callback: Callable[[TransitionRow], None]) -> None:
        """Call `callback` after every committed lifecycle transition."""
        self._effects.add_transition_listener(callback)

    # ------------------------------------------------------------------ agent side

    def note_seen(self, node: str) -> None:
        """Record that `node` just sent something (for the heartbeat check)."""
        self._nodes.note_seen(node)

    async def register(self, node: str, hello: fleet_pb2.Hello) -> Registration:
        """Store a node's Hello and apply the `registered` lifecycle event."""
        identity = identity_from_hello(node, hello)
        registration, row = await self._writer.call(
            partial(register_job, identity=identity, now=self.clock.time()))
        self._nodes.note_registered(node, registration.state)
        if row is not None:
            self._effects.on_transition(row)
        self.note_seen(node)
        self.metrics.ingest_messages.labels("hello").inc()
        return registration

    async def submit(self, item: Inbound) -> None:
        """Queue a validated durable message for storage (waits when the queue is full)."""
        await self.pipeline.submit(item)

    def deliver_ephemeral(self, node: str, msg: fleet_pb2.AgentMessage) -> None:
        """Handle a seq == 0 message: never stored, passed to listeners at once."""
        self.metrics.ingest_messages.labels("ephemeral").inc()
        if msg.WhichOneof("body") == "result":
            result = msg.result
            self.directives.resolve(DirectiveOutcome(
                result.directive_id, node, result.ok, "result", result.message, None, result))
        self._effects.notify(Delivered(node, msg, None, durable=False))

    # ------------------------------------------------------------------ directives

    def send_directive(self, node: str, directive: fleet_pb2.Directive) -> str:
        """Queue `directive` for `node`'s agent; return its id.

        Raises NotConnected when the node has no live stream, DirectiveBacklog when its
        outbound queue is full.
        """
        stream = self.streams.get(node)
        if stream is None:
            raise NotConnected(f"{node} is not connected")
        directive_id = self.directives.prepare(node, directive)
        try:
            stream.push_directive(directive)
        except DirectiveBacklog:
            self.directives.forget(directive_id)
            raise
        self.metrics.directives.labels(directive.WhichOneof("kind") or "none").inc()
        return directive_id

    async def wait_directive(self, directive_id: str, timeout_s: float) -> DirectiveOutcome:
        """Await the answer to a directive; raises TimeoutError after `timeout_s`."""
        return await self.directives.wait(directive_id, timeout_s)

    async def call_directive(
        self, node: str, directive: fleet_pb2.Directive, timeout_s: float
    ) -> DirectiveOutcome:
        """Send a directive and await its answer."""
        return await self.wait_directive(self.send_directive(node, directive), timeout_s)

    # ------------------------------------------------------------------ commands

    async def apply_event(
        self, node: str, event: NodeEvent, *, cause: str, actor: str,
        evidence_id: int | None = None, audit: dict[str, str] | None = None,
    ) -> TransitionRow | None:
        """Apply a lifecycle command to `node`; None when it changes nothing.

        Raises UnknownNode, or IllegalTransition when the node's state does not allow it.
        With `audit`, the action is written to the audit log in the same transaction.
        """
        row = await self._writer.call(partial(
            command_job, node=node, event=event, cause=cause, actor=actor,
            at=self.clock.time(), evidence_id=evidence_id, audit=audit))
        if row is not None:
            self._effects.on_transition(row)
        return row

    async def drain(self, node: str, reason: str, actor: str) -> TransitionRow | None:
        """Operator drain (audit-logged); tells a connected agent with SetDrain."""
        row = await self.apply_event(node, NodeEvent.OPERATOR_DRAIN,
                                     cause=f"drained by {actor}: {reason}", actor=actor,
                                     audit={"reason": reason})
        self._tell_drain(node, True, reason)
        return row

    async def undrain(self, node: str, reason: str, actor: str) -> TransitionRow | None:
        """Operator undrain (audit-logged): the node must pass preflight again."""
        row = await self.apply_event(node, NodeEvent.OPERATOR_UNDRAIN,
                                     cause=f"undrained by {actor}: {reason}", actor=actor,
                                     audit={"reason": reason})
        self._tell_drain(node, False, reason)
        return row

    def _tell_drain(self, node: str, drained: bool, reason: str) -> None:
        directive = fleet_pb2.Directive(set_drain=fleet_pb2.SetDrain(drained=drained,
                                                                     reason=reason))
        with contextlib.suppress(NotConnected, DirectiveBacklog):
            directive_id = self.send_directive(node, directive)
            self.directives.forget(directive_id)  # best effort: nobody awaits the answer

    # ------------------------------------------------------------------ heartbeat

    async def check_heartbeats(self) -> list[TransitionRow]:
        """Mark nodes silent for longer than the heartbeat timeout unreachable."""
        timeout = self.settings.heartbeat_timeout_s
        stale = self._nodes.stale(timeout)
        if not stale:
            return []
        rows = await self._writer.call(partial(
            heartbeat_job, stale=stale, timeout_s=timeout, at=self.clock.time()))
        self._nodes.mark_lost(stale)
        for row in rows:
            self._effects.on_transition(row)
        return rows

    # ------------------------------------------------------------------ retention

    async def prune(self, max_chunks: int = 1000) -> int:
        """Delete raw reports older than the retention, a chunk per transaction, so ingest
        batches interleave; return the rows deleted."""
        before = self.clock.time() - self.settings.report_retention_s
        total = 0
        for _ in range(max_chunks):
            deleted = await self._writer.call(lambda store: store.prune(before))
            total += deleted
            if not deleted:
                break
        if total:
            log.info("pruned %d report/evidence rows past retention", total)
        return total

    # ------------------------------------------------------------------ reads

    async def read(self, fn: Callable[[FleetStore], T]) -> T:
        """Run a read-only query on the reader thread."""
        return await self._reader.call(fn)

    async def write(self, fn: Callable[[FleetStore], T]) -> T:
        """Run a write on the writer thread (in order with ingest batches)."""
        return await self._writer.call(fn)

    async def node(self, name: str) -> NodeRow:
        """One node; raises UnknownNode."""
        row = await self.read(lambda store: store.node(name))
        if row is None:
            raise UnknownNode(name)
        return row

    def connected(self, node: str) -> bool:
        """Whether `node` has a live stream."""
        return node in self.streams

    def state_of(self, node: str) -> NodeState | None:
        """The cached lifecycle state of `node`."""
        return self._nodes.state_of(node)

    def state_reasons(self) -> Mapping[str, tuple[str, str]]:
        """Every node's cached (state, reason recorded with it), for scrape-time metrics."""
        return self._nodes.state_reasons()

    def heartbeat_ages(self) -> Mapping[str, float]:
        """Seconds since each node was last heard from (restarts count from start-up)."""
        return self._nodes.heartbeat_ages()

    def state_counts(self) -> Mapping[str, int]:
        """Nodes per lifecycle state (every state listed)."""
        return self._nodes.state_counts()


__all__ = ["Delivered", "FleetService", "ServiceSettings", "UnknownNode"]
