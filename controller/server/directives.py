"""Directives out, answers back: one future per directive id.

A directive is answered by a committed Report carrying its id (CheckNow) or a DirectiveResult
(everything else). Only the node the directive was sent to can answer it. Futures that nobody
awaits are forgotten after `ttl_s`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from gpufleet_common.clock import Clock
from protos.gpufleet.v1 import fleet_pb2


class NotConnected(RuntimeError):
    """The node has no live stream, so the directive cannot be sent."""


@dataclass(frozen=True)
class DirectiveOutcome:
    """How a directive ended.

    `answer`: "report" (a fresh report was stored), "result" (a DirectiveResult arrived),
    or "undelivered" (the stream closed before the directive was written).
    """

    directive_id: str
    node: str
    ok: bool
    answer: str
    message: str = ""
    evidence_id: int | None = None
    result: fleet_pb2.DirectiveResult | None = None


@dataclass
class _Pending:
    node: str
    kind: str
    issued_at: float
    future: asyncio.Future[DirectiveOutcome]


class DirectiveHub:
    """Tracks issued directives and resolves them when their answers commit."""

    def __init__(self, clock: Clock, *, ttl_s: float = 3600.0) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._pending: dict[str, _Pending] = {}

    def prepare(self, node: str, directive: fleet_pb2.Directive) -> str:
        """Give `directive` an id (unless it has one) and an issue time; track it."""
        self._forget_expired()
        if not directive.id:
            directive.id = f"d-{uuid.uuid4().hex[:16]}"
        if directive.id in self._pending:
            raise ValueError(f"directive id {directive.id!r} is already pending")
        directive.issued_at = self._clock.time()
        future: asyncio.Future[DirectiveOutcome] = asyncio.get_running_loop().create_future()
        kind = directive.WhichOneof("kind") or "none"
        self._pending[directive.id] = _Pending(node, kind, self._clock.monotonic(), future)
        return directive.id

    def kind(self, directive_id: str) -> str | None:
        """The kind of a pending directive ("check_now", ...), or None."""
        pending = self._pending.get(directive_id)
        return None if pending is None else pending.kind

    async def wait(self, directive_id: str, timeout_s: float) -> DirectiveOutcome:
        """The outcome of a directive (awaited once); raises TimeoutError after `timeout_s`."""
        pending = self._pending.get(directive_id)
        if pending is None:
            raise KeyError(f"no pending directive {directive_id!r}")
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), timeout_s)
        finally:
            self._pending.pop(directive_id, None)

    def resolve(self, outcome: DirectiveOutcome) -> bool:
        """Complete a directive; ignored (False) if unknown, done, or from another node."""
        pending = self._pending.get(outcome.directive_id)
        if pending is None or pending.node != outcome.node or pending.future.done():
            return False
        pending.future.set_result(outcome)
        return True

    def fail_undelivered(self, node: str, directives: list[fleet_pb2.Directive]) -> None:
        """Resolve directives that never reached the agent."""
        for directive in directives:
            self.resolve(DirectiveOutcome(directive.id, node, False, "undelivered",
                                          "the stream closed before delivery"))

    def forget(self, directive_id: str) -> None:
        """Stop tracking a directive."""
        pending = self._pending.pop(directive_id, None)
        if pending is not None and not pending.future.done():
            pending.future.cancel()

    def __len__(self) -> int:
        return len(self._pending)

    def _forget_expired(self) -> None:
        horizon = self._clock.monotonic() - self._ttl_s
        for directive_id in [d for d, p in self._pending.items() if p.issued_at < horizon]:
            self.forget(directive_id)
