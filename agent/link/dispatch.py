"""Directive dispatch: validate, de-duplicate, run the handler off the receive loop, answer.

The handler is the agent's (`DirectiveHandler`): it runs in a small thread pool so a slow one
(a burn-in) never stalls the stream. It returns the DirectiveResult to send, or None when it
answers by itself later (CheckNow is answered by a Report carrying the directive id; a long job
may call `ControllerLink.submit_result` when it ends). An exception becomes a failed result.
A directive is refused with a failed result when it is invalid or when too many are pending;
one whose id is running or was handled recently (a controller resending after a reconnect) is
not run again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from agent.link.directives import directive_from_proto
from agent.link.types import Directive, DirectiveError, DirectiveResult
from protos.gpufleet.v1 import fleet_pb2

log = logging.getLogger(__name__)

DirectiveHandler = Callable[[Directive], DirectiveResult | None]
RECENT_IDS = 1024


@dataclass(frozen=True, slots=True)
class DispatchStats:
    """Counters of the dispatcher."""

    handled: int
    rejected: int
    duplicates: int
    handler_errors: int
    running: int


class DirectiveDispatcher:
    """Turns incoming Directive messages into handler calls and results (thread-safe)."""

    def __init__(
        self,
        submit_result: Callable[[DirectiveResult], int],
        handler: DirectiveHandler | None = None,
        *,
        workers: int = 4,
        max_pending: int = 32,
    ) -> None:
        self.handler = handler
        self._submit = submit_result
        self._max_pending = max_pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="directive")
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._handled = self._rejected = self._duplicates = self._errors = 0
        self._closed = False

    def dispatch(self, msg: fleet_pb2.Directive) -> None:
        """Validate and schedule one directive; never blocks, never raises."""
        try:
            directive = directive_from_proto(msg)
        except DirectiveError as exc:
            log.warning("refused %s", exc)
            with self._lock:
                self._rejected += 1
            if exc.directive_id:
                self._answer(
                    DirectiveResult(exc.directive_id, ok=False, message=f"refused: {exc.reason}")
                )
            return
        with self._lock:
            if directive.id in self._running or directive.id in self._recent:
                self._duplicates += 1
                return
            if self._closed or len(self._running) >= self._max_pending:
                self._rejected += 1
                busy = True
            else:
                self._running.add(directive.id)
                busy = False
        if busy:
            self._answer(DirectiveResult(directive.id, ok=False, message="refused: agent busy"))
            return
        try:
            self._pool.submit(self._run, directive)
        except RuntimeError:  # closed meanwhile
            with self._lock:
                self._running.discard(directive.id)

    def _run(self, directive: Directive) -> None:
        handler = self.handler
        result: DirectiveResult | None
        try:
            if handler is None:
                result = DirectiveResult(directive.id, ok=False, message="no directive handler")
            else:
                result = handler(directive)
                if result is not None and result.directive_id != directive.id:
                    result = DirectiveResult(directive.id, result.ok, result.message,
                                             result.burnin, result.burnin_id)  # fmt: skip
        except Exception as exc:  # the handler's bug must not kill the agent
            log.exception("directive %s handler failed", directive.id)
            with self._lock:
                self._errors += 1
            result = DirectiveResult(directive.id, ok=False, message=f"handler error: {exc!r}")
        finally:
            with self._lock:
                self._running.discard(directive.id)
                self._recent[directive.id] = None
                while len(self._recent) > RECENT_IDS:
                    self._recent.popitem(last=False)
                self._handled += 1
        if result is not None:
            self._answer(result)

    def _answer(self, result: DirectiveResult) -> None:
        try:
            self._submit(result)
        except Exception:
            log.exception("could not queue the result of directive %s", result.directive_id)

    def stats(self) -> DispatchStats:
        """A snapshot of the counters."""
        with self._lock:
            return DispatchStats(self._handled, self._rejected, self._duplicates, self._errors,
                                 len(self._running))  # fmt: skip

    def close(self) -> None:
        """Stop taking directives; queued ones are cancelled, running ones finish on their own."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
