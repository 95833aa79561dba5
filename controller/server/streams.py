"""Per-node outbound side of the agent streams: cumulative acks and directives, in order.

Each live stream has one sender task, so writes to a stream never overlap. Acks collapse: only
the highest pending one is sent. A newer stream for the same node replaces the older one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable

import grpc

from protos.gpufleet.v1 import fleet_pb2

MAX_PENDING_DIRECTIVES = 256
_STREAM_IDS = itertools.count(1)


class DirectiveBacklog(RuntimeError):
    """A node's outbound directive queue is full."""


class NodeStream:
    """The controller's handle on one node's live stream."""

    def __init__(
        self,
        node: str,
        write: Callable[[fleet_pb2.ControllerMessage], Awaitable[None]],
        *,
        max_directives: int = MAX_PENDING_DIRECTIVES,
    ) -> None:
        self.node = node
        self.id = next(_STREAM_IDS)
        self._write = write
        self._max_directives = max_directives
        self._ack_pending = 0
        self.acked = 0
        self._directives: deque[fleet_pb2.Directive] = deque()
        self._wake = asyncio.Event()
        self._acked_changed = asyncio.Event()
        self.submitted = 0  # highest seq this stream handed to ingest
        self.ended = asyncio.Event()
        self.end_code = grpc.StatusCode.ABORTED
        self.end_message = ""

    def offer_ack(self, seq: int) -> None:
        """Acknowledge (cumulatively) everything up to `seq`; only increases are sent."""
        if seq > self._ack_pending and seq > self.acked:
            self._ack_pending = seq
            self._wake.set()

    def push_directive(self, directive: fleet_pb2.Directive) -> None:
        """Queue a directive for the agent; raise DirectiveBacklog when the queue is full."""
        if len(self._directives) >= self._max_directives:
            raise DirectiveBacklog(
                f"{self.node} has {len(self._directives)} undelivered directives"
            )
        self._directives.append(directive)
        self._wake.set()

    def undelivered(self) -> list[fleet_pb2.Directive]:
        """Take the directives that were never written to the stream."""
        out = list(self._directives)
        self._directives.clear()
        return out

    async def wait_acked(self, seq: int, timeout_s: float) -> bool:
        """Wait until an ack >= `seq` was written (False after `timeout_s`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.acked < seq:
            self._acked_changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._acked_changed.wait(), remaining)
            except TimeoutError:
                return self.acked >= seq
        return True

    def end(self, code: grpc.StatusCode, message: str) -> None:
        """Ask the stream's handler to finish the RPC with `code`."""
        if not self.ended.is_set():
            self.end_code = code
            self.end_message = message
            self.ended.set()

    async def run_sender(self) -> None:
        """Write pending acks and directives until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._ack_pending > self.acked:
                seq = self._ack_pending
                await self._write(fleet_pb2.ControllerMessage(ack=fleet_pb2.Ack(seq=seq)))
                self.acked = max(self.acked, seq)
                self._acked_changed.set()
            while self._directives:
                directive = self._directives[0]
                await self._write(fleet_pb2.ControllerMessage(directive=directive))
                self._directives.popleft()


class StreamRegistry:
    """The live stream of every connected node."""

    def __init__(self) -> None:
        self._streams: dict[str, NodeStream] = {}

    def attach(self, stream: NodeStream) -> NodeStream | None:
        """Make `stream` the node's live stream; end and return the one it replaces."""
        old = self._streams.get(stream.node)
        self._streams[stream.node] = stream
        if old is not None:
            old.end(grpc.StatusCode.ABORTED, "replaced by a newer stream for the same node")
        return old

    def detach(self, stream: NodeStream) -> None:
        """Forget `stream` if it is still the node's live one."""
        if self._streams.get(stream.node) is stream:
            del self._streams[stream.node]

    def end_all(self, code: grpc.StatusCode, message: str) -> None:
        """Ask every live stream to finish with `code`."""
        for stream in list(self._streams.values()):
            stream.end(code, message)

    def get(self, node: str) -> NodeStream | None:
        """The node's live stream, or None."""
        return self._streams.get(node)

    def __contains__(self, node: object) -> bool:
        return node in self._streams

    def __len__(self) -> int:
        return len(self._streams)
