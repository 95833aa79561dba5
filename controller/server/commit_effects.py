"""What follows a commit: acknowledgements, metrics, the node cache, directives, listeners.

The ingest pipeline hands every committed batch to `CommitEffects.on_commit` and every
failed one to `on_failure`; FleetService passes the transitions it commits itself
(registration, commands, the heartbeat check) to `on_transition`. Runs on the event loop.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from prometheus_client import Counter as Counter_

from controller.metrics import ControllerMetrics
from controller.store import Inbound, TransitionRow
from protos.gpufleet.v1 import fleet_pb2

from .directives import DirectiveHub, DirectiveOutcome
from .ingest import Committed
from .node_cache import NodeCache
from .streams import StreamRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """A message from a node, after it was committed (durable) or on receipt (ephemeral)."""

    node: str
    msg: fleet_pb2.AgentMessage
    evidence_id: int | None
    durable: bool


class CommitEffects:
    """The listeners, and the effects of committed (or failed) writes."""

    def __init__(
        self, nodes: NodeCache, streams: StreamRegistry, directives: DirectiveHub,
        metrics: ControllerMetrics,
    ) -> None:
        self._nodes = nodes
        self._streams = streams
        self._directives = directives
        self._metrics = metrics
        self._listeners: list[Callable[[Delivered], None]] = []
        self._transition_listeners: list[Callable[[TransitionRow], None]] = []
        self._kind_counters: dict[str, Counter_] = {}

    # ------------------------------------------------------------------ listeners

    def add_listener(self, callback: Callable[[Delivered], None]) -> None:
        """Call `callback` for every newly stored message and every ephemeral one."""
        self._listeners.append(callback)

    def add_transition_listener(self, callback: Callable[[TransitionRow], None]) -> None:
        """Call `callback` after every committed lifecycle transition."""
        self._transition_listeners.append(callback)

    def notify(self, delivered: Delivered) -> None:
        """Pass `delivered` to every listener (a failing listener is logged, not raised)."""
        for callback in self._listeners:
            try:
                callback(delivered)
            except Exception:
                log.exception("listener failed on a message from %s", delivered.node)

    def on_transition(self, row: TransitionRow) -> None:
        """Update the node cache for a committed transition, then tell the listeners."""
        self._nodes.apply(row)
        for callback in self._transition_listeners:
            try:
                callback(row)
            except Exception:
                log.exception("transition listener failed for %s", row.node)

    # ------------------------------------------------------------------ ingest

    def on_commit(self, committed: Committed) -> None:
        """Acknowledge, count, apply the batch's transitions, resolve directives, notify."""
        batch = committed.batch
        for node, seq in batch.max_seq.items():
            stream = self._streams.get(node)
            if stream is not None:
                stream.offer_ack(seq)
        observe = self._metrics.ingest_latency.observe
        done = committed.committed_mono
        for inbound in committed.items:
            observe(done - inbound.received_mono)
        self._metrics.batch_messages.observe(len(committed.items))
        kinds = Counter(item.kind for item in batch.stored)
        for kind, n in kinds.items():
            self._kind_counter(kind).inc(n)
        if batch.duplicates:
            self._metrics.ingest_messages.labels("duplicate").inc(batch.duplicates)
        for _move, row in committed.transitions:
            self.on_transition(row)
        if not self._listeners and not any(s.directive_id for s in batch.stored):
            return
        by_key = {(i.node, i.msg.seq): i.msg for i in committed.items}
        for stored in batch.stored:
            msg = by_key.get((stored.node, stored.seq))
            if stored.directive_id:
                result = msg.result if msg is not None and stored.kind == "result" else None
                ok = result.ok if result is not None else True
                self._directives.resolve(DirectiveOutcome(
                    stored.directive_id, stored.node, ok, "report" if result is None else "result",
                    result.message if result is not None else f"verdict {stored.verdict}",
                    stored.evidence_id, result,
                ))
            if self._listeners and msg is not None:
                self.notify(Delivered(stored.node, msg, stored.evidence_id, durable=True))

    def _kind_counter(self, kind: str) -> Counter_:
        counter = self._kind_counters.get(kind)
        if counter is None:
            counter = self._kind_counters[kind] = self._metrics.ingest_messages.labels(kind)
        return counter

    def on_failure(self, items: list[Inbound], exc: BaseException) -> None:
        """End the streams of the nodes whose messages could not be stored (they replay)."""
        for node in {item.node for item in items}:
            stream = self._streams.get(node)
            if stream is not None:
                stream.end(grpc.StatusCode.UNAVAILABLE,
                           f"the controller could not store messages ({type(exc).__name__}); "
                           "reconnect and replay")


__all__ = ["CommitEffects", "Delivered"]
