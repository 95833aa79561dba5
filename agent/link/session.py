"""One connected stream: Hello, Welcome, replay, then live sending and receiving.

A session runs on the link's event loop and ends at the first failure of either direction
(or when cancelled); `ControllerLink` then backs off and opens a new one. One task writes (the
only writer of the call, as gRPC requires): spooled messages above the replay cursor in seq
order, then ephemeral ones, then it sleeps until woken by a submit. One task reads: Acks go to
the spool (validated), Directives to the dispatcher, anything else is counted as a protocol
error and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf.message import DecodeError

from agent.link.config import LinkConfig
from agent.link.protocol import accept_ack, plan_welcome
from agent.link.spool import Spool
from agent.link.transport import ConnectCall
from gpufleet_common.clock import Clock
from protos.gpufleet.v1 import fleet_pb2

log = logging.getLogger(__name__)


class ProtocolError(Exception):
    """The controller broke the stream protocol badly enough to end the stream."""


@dataclass
class LinkCounters:
    """Mutable counters, written on the link's loop thread, read anywhere (snapshot)."""

    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    last_ack_seq: int = 0
    protocol_errors: int = 0
    ephemeral_dropped: int = 0
    spool_errors: int = 0
    controller_id: str = ""


@dataclass
class SessionOutcome:
    """How a session ended, for the reconnect decisions."""

    welcomed: bool = False
    connected_for: float = 0.0
    code: str = ""  # gRPC status name when the RPC failed
    suspect_seq: int = 0  # oldest message sent and not acknowledged at the end
    error: str = ""


class Session:
    """Drives one AgentLink.Connect call; `run` returns when the stream is over."""

    def __init__(
        self,
        call: ConnectCall,
        *,
        spool: Spool,
        hello: fleet_pb2.Hello,
        ephemeral: asyncio.Queue[fleet_pb2.AgentMessage],
        wake: asyncio.Event,
        dispatch: Callable[[fleet_pb2.Directive], None],
        counters: LinkCounters,
        clock: Clock,
        config: LinkConfig,
    ) -> None:
        self.call = call
        self.spool = spool
        self.hello = hello
        self.ephemeral = ephemeral
        self.wake = wake
        self.dispatch = dispatch
        self.counters = counters
        self.clock = clock
        self.config = config
        self.highest_sent = 0

    async def run(self) -> SessionOutcome:
        """Run the stream to its end; never raises except on cancellation."""
        out = SessionOutcome()
        started = self.clock.monotonic()
        try:
            await self._handshake()
            out.welcomed = True
            started = self.clock.monotonic()
            self.counters.connected = True
            self.counters.connects += 1
            await self._stream()
            out.error = "stream closed by the controller"
        except grpc.aio.AioRpcError as exc:
            out.code, out.error = exc.code().name, exc.details() or ""
        except (ProtocolError, TimeoutError, asyncio.InvalidStateError) as exc:
            out.error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a spool or programming error must not kill the link
            log.exception("link session failed")
            out.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.counters.connected = False
            if out.welcomed:
                out.connected_for = self.clock.monotonic() - started
            self.call.cancel()
        if not out.code and self.call.done():
            with contextlib.suppress(Exception):
                out.code = (await asyncio.wait_for(self.call.code(), 1.0)).name
        oldest = self.spool.oldest_seq()
        out.suspect_seq = oldest if 0 < oldest <= self.highest_sent else 0
        return out

    async def _handshake(self) -> None:
        hello = fleet_pb2.Hello()
        hello.CopyFrom(self.hello)
        hello.next_seq = self.spool.next_seq
        await self.call.write(fleet_pb2.AgentMessage(seq=0, sent_at=self.clock.time(), hello=hello))
        first = await asyncio.wait_for(self.call.read(), self.config.welcome_timeout_s)
        if not isinstance(first, fleet_pb2.ControllerMessage):
            raise ProtocolError("stream ended before the Welcome")
        if first.WhichOneof("body") != "welcome":
            raise ProtocolError(f"first controller message is {first.WhichOneof('body')!r}")
        welcome = first.welcome
        if welcome.node and welcome.node != self.hello.node:
            log.warning("controller calls this node %r, not %r", welcome.node, self.hello.node)
        plan = plan_welcome(welcome.last_stored_seq, self.spool.next_seq)
        if plan.rebase_to:
            log.warning("controller stored up to seq %d, above ours: renumbering from %d",
                        welcome.last_stored_seq, plan.rebase_to)  # fmt: skip
            self.spool.rebase(plan.rebase_to)
        elif plan.ack_through > self.spool.acked_seq:
            self.spool.ack(plan.ack_through)
        self.highest_sent = plan.replay_after
        self.counters.last_ack_seq = welcome.last_stored_seq
        self.counters.controller_id = welcome.controller_id
        while not self.ephemeral.empty():  # stale ticks from before this stream
            self.ephemeral.get_nowait()

    async def _stream(self) -> None:
        sender = asyncio.create_task(self._send(self.highest_sent))
        receiver = asyncio.create_task(self._receive())
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises the failure that ended the stream
        finally:
            for task in (sender, receiver):
                task.cancel()
            await asyncio.gather(sender, receiver, return_exceptions=True)

    async def _send(self, cursor: int) -> None:
        while True:
            self.wake.clear()
            start, sent = cursor, 0
            for seq, data in itertools.islice(self.spool.pending(cursor), self.config.send_batch):
                cursor = seq
                try:
                    msg = fleet_pb2.AgentMessage.FromString(data)
                except DecodeError:
                    log.error("spooled message %d does not parse: skipped", seq)
                    self.spool.discard(seq, reason="corrupt")
                    continue
                self.highest_sent = seq  # before the write: its Ack may be read first
                await self.call.write(msg)
                sent += 1
            while sent < self.config.send_batch and not self.ephemeral.empty():
                await self.call.write(self.ephemeral.get_nowait())
                sent += 1
            if not sent and cursor == start:
                await self.wake.wait()

    async def _receive(self) -> None:
        while True:
            msg = await self.call.read()
            if not isinstance(msg, fleet_pb2.ControllerMessage):
                return  # end of stream
            kind = msg.WhichOneof("body")
            if kind == "ack":
                self._on_ack(msg.ack.seq)
            elif kind == "directive":
                self.dispatch(msg.directive)
            else:
                self.counters.protocol_errors += 1
                log.warning("unexpected controller message %r ignored", kind)

    def _on_ack(self, seq: int) -> None:
        if not accept_ack(seq, self.highest_sent):
            self.counters.protocol_errors += 1
            log.warning(
                "ack %d is above the highest seq sent (%d): ignored", seq, self.highest_sent
            )
            return
        if seq > self.spool.acked_seq:
            self.spool.ack(seq)
        self.counters.last_ack_seq = max(self.counters.last_ack_seq, seq)
