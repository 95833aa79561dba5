"""`ControllerLink`: the agent's reconnecting stream to the controller, backed by the spool.

Threading model: the agent's sweep loop is synchronous, so the link runs its own thread with
its own asyncio loop (grpc.aio lives only there). The `submit_*` methods are called from any
thread: they convert, append to the spool (durable before they return) and wake the sender
with `call_soon_threadsafe`; they never wait for the network. Directive handlers run in the
dispatcher's thread pool. `state()` is a snapshot readable from any thread. `close()` stops the
loop and joins the thread within `LinkConfig.close_timeout_s`; the spool stays open (the caller
owns it and closes it after the link).

Delivery is at-least-once: a message leaves the spool only when a cumulative Ack (or a
Welcome.last_stored_seq) covers it; after a reconnect everything above last_stored_seq is sent
again, in seq order, and the controller discards replays it already stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from agent.link import convert
from agent.link.backoff import backoff_delay, next_attempt
from agent.link.config import LinkConfig, TlsConfig
from agent.link.dispatch import DirectiveDispatcher, DirectiveHandler
from agent.link.protocol import Strikes, is_poison, next_strikes
from agent.link.session import LinkCounters, Session, SessionOutcome
from agent.link.spool import Spool, SpoolError
from agent.link.transport import make_channel, open_stream
from agent.link.types import DirectiveResult, NodeIdentity, ProgressRecord, RankExit
from agent.model import Action, NodeReport, Severity, XidEvent
from gpufleet_common.clock import Clock, SystemClock
from protos.gpufleet.v1 import fleet_pb2

log = logging.getLogger(__name__)
_DRAIN_S = 0.1  # let gRPC deliver the completions of the closed channel before the loop ends


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the link exposes for metrics."""

    connected: bool
    connects: int
    reconnects: int
    last_ack_seq: int
    next_seq: int
    spool_depth: int
    spool_bytes: int
    dropped: int  # by the spool's drop policy
    corrupt: int  # spooled records that failed their checksum
    rejected: int  # records the controller kept refusing, given up
    protocol_errors: int
    ephemeral_dropped: int
    spool_errors: int
    directives_handled: int
    directives_rejected: int


class ControllerLink:
    """Reconnecting AgentLink client; see the module docstring for threads and delivery."""

    def __init__(
        self,
        target: str,
        spool: Spool,
        identity: NodeIdentity | Callable[[], NodeIdentity],
        *,
        on_directive: DirectiveHandler | None = None,
        tls: TlsConfig | None = None,
        config: LinkConfig | None = None,
        clock: Clock | None = None,
        rand: Callable[[], float] | None = None,
        boot_id: str | None = None,
    ) -> None:
        if not target or ":" not in target:
            raise ValueError(f"controller target must be HOST:PORT, got {target!r}")
        self.target = target
        self.spool = spool
        self.config = config or LinkConfig()
        self.tls = tls
        self.clock: Clock = clock or SystemClock()
        self._rand = rand or random.Random().random
        self.boot_id = boot_id or uuid.uuid4().hex
        self._identity = identity if callable(identity) else (lambda: identity)
        self._hello()  # fail now, not in the thread, on a node name the controller refuses
        self.counters = LinkCounters()
        self.dispatcher = DirectiveDispatcher(
            self.submit_result,
            on_directive,
            workers=self.config.directive_workers,
            max_pending=self.config.max_pending_directives,
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._ephemeral: asyncio.Queue[fleet_pb2.AgentMessage] | None = None

    # ------------------------------------------------------------ lifecycle

    def set_directive_handler(self, handler: DirectiveHandler | None) -> None:
        """Register (or replace) the callback that executes directives."""
        self.dispatcher.handler = handler

    def start(self) -> None:
        """Start the link thread (idempotent); returns once its loop is running."""
        if self._thread is not None:
            return
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(ready,), name="controller-link", daemon=True
        )
        self._thread.start()
        if not ready.wait(self.config.close_timeout_s):
            raise RuntimeError("controller link thread did not start")

    def close(self, timeout: float | None = None) -> bool:
        """Stop the link; True when its thread ended within `timeout` (default from config)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop.set)
        self.dispatcher.close()
        if self._thread is None:
            return True
        self._thread.join(self.config.close_timeout_s if timeout is None else timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> ControllerLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ submitting (any thread)

    def submit_report(
        self,
        report: NodeReport,
        *,
        sweep_duration_s: float = 0.0,
        window_s: float = 0.0,
        directive_id: str = "",
    ) -> int:
        """Spool a judged sweep; returns its seq (0: not stored, see `state()`)."""
        body = convert.report_to_proto(
            report, sweep_duration_s=sweep_duration_s, window_s=window_s, directive_id=directive_id
        )
        return self._submit(fleet_pb2.AgentMessage(report=body))

    def submit_xid(self, event: XidEvent, severity: Severity, action: Action) -> int:
        """Spool an XID with the agent's judgement; returns its seq."""
        xid = convert.xid_to_proto(event, severity, action)
        return self._submit(fleet_pb2.AgentMessage(event=fleet_pb2.Event(xid=xid)))

    def submit_rank_exit(self, event: RankExit) -> int:
        """Spool the exit of a training rank; returns its seq."""
        body = convert.rank_exit_to_proto(event)
        return self._submit(fleet_pb2.AgentMessage(event=fleet_pb2.Event(rank_exit=body)))

    def submit_result(self, result: DirectiveResult) -> int:
        """Spool the answer to a directive; returns its seq."""
        body = convert.result_to_proto(result)
        return self._submit(fleet_pb2.AgentMessage(result=body))

    def send_progress(self, record: ProgressRecord) -> bool:
        """Send a progress tick if connected (ephemeral: never spooled); False if not sent."""
        loop, queue = self._loop, self._ephemeral
        if loop is None or queue is None or not self.counters.connected:
            return False
        msg = fleet_pb2.AgentMessage(
            seq=0,
            sent_at=self.clock.time(),
            event=fleet_pb2.Event(progress=convert.progress_to_proto(record)),
        )
        try:
            loop.call_soon_threadsafe(self._offer, queue, msg)
        except RuntimeError:
            return False
        return True

    def _submit(self, message: fleet_pb2.AgentMessage) -> int:
        message.sent_at = self.clock.time()
        if message.ByteSize() > self.config.max_message_bytes:
            raise ValueError(
                f"a {message.ByteSize()}-byte message is over the "
                f"{self.config.max_message_bytes}-byte transport limit"
            )
        try:
            seq = self.spool.append(message)
        except SpoolError as exc:
            log.error("could not spool a %s: %s", message.WhichOneof("body"), exc)
            self.counters.spool_errors += 1
            return 0
        self._notify()
        return seq

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def _offer(
        self, queue: asyncio.Queue[fleet_pb2.AgentMessage], msg: fleet_pb2.AgentMessage
    ) -> None:
        try:
            queue.put_nowait(msg)
        except asyncio.QueueFull:
            self.counters.ephemeral_dropped += 1
            return
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------ state

    def state(self) -> LinkState:
        """A snapshot for metrics."""
        s, c, d = self.spool.stats(), self.counters, self.dispatcher.stats()
        return LinkState(
            connected=c.connected,
            connects=c.connects,
            reconnects=c.reconnects,
            last_ack_seq=max(c.last_ack_seq, s.acked_seq),
            next_seq=s.next_seq,
            spool_depth=s.depth,
            spool_bytes=s.bytes,
            dropped=s.dropped,
            corrupt=s.corrupt,
            rejected=s.rejected,
            protocol_errors=c.protocol_errors,
            ephemeral_dropped=c.ephemeral_dropped,
            spool_errors=c.spool_errors,
            directives_handled=d.handled,
            directives_rejected=d.rejected,
        )

    # ------------------------------------------------------------ the loop thread

    def _hello(self) -> fleet_pb2.Hello:
        return convert.hello_to_proto(self._identity(), next_seq=0, boot_id=self.boot_id)

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._wake, self._stop = asyncio.Event(), asyncio.Event()
        self._ephemeral = asyncio.Queue(maxsize=self.config.ephemeral_queue)
        self._loop = loop
        ready.set()
        try:
            loop.run_until_complete(self._main())
        except Exception:
            log.exception("controller link loop died")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(_DRAIN_S))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        assert self._stop is not None
        attempt, strikes, first = 0, Strikes(), True
        while not self._stop.is_set():
            if not first:
                self.counters.reconnects += 1
            first = False
            outcome = await self._connect_once()
            if outcome.error:
                log.info("controller link to %s ended: %s %s", self.target, outcome.code,
                         outcome.error)  # fmt: skip
            strikes = next_strikes(strikes, outcome.suspect_seq, outcome.code)
            if is_poison(strikes):
                log.error("controller refused message %d %d times: giving it up",
                          strikes.seq, strikes.count)  # fmt: skip
                with contextlib.suppress(SpoolError):
                    self.spool.discard(strikes.seq, reason="rejected")
                strikes = Strikes()
            healthy = outcome.welcomed and outcome.connected_for >= self.config.healthy_after_s
            attempt = next_attempt(attempt, healthy)
            delay = backoff_delay(
                attempt, self.config.backoff_base_s, self.config.backoff_cap_s, self._rand
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def _connect_once(self) -> SessionOutcome:
        assert self._stop is not None and self._wake is not None and self._ephemeral is not None
        try:
            hello = self._hello()
            channel = make_channel(self.target, self.tls, self.config)
        except Exception as exc:
            log.exception("cannot open a channel to %s", self.target)
            return SessionOutcome(error=repr(exc))
        session = Session(
            open_stream(channel),
            spool=self.spool,
            hello=hello,
            ephemeral=self._ephemeral,
            wake=self._wake,
            dispatch=self.dispatcher.dispatch,
            counters=self.counters,
            clock=self.clock,
            config=self.config,
        )
        run = asyncio.create_task(session.run())
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                run.cancel()
            outcome = await asyncio.gather(run, return_exceptions=True)
            return outcome[0] if isinstance(outcome[0], SessionOutcome) else SessionOutcome()
        finally:
            stop.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(channel.close(grace=None), 1.0)
