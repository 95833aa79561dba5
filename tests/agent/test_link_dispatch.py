"""Directive dispatch without a network: results for every path, bounded concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from agent.link.dispatch import DirectiveDispatcher, DirectiveHandler
from agent.link.types import Directive, DirectiveResult
from protos.gpufleet.v1 import fleet_pb2 as pb

pytestmark = pytest.mark.timeout(20)


class Results:
    """A fake `submit_result`: collects what would be spooled."""

    def __init__(self) -> None:
        self.items: list[DirectiveResult] = []
        self.lock = threading.Lock()

    def __call__(self, result: DirectiveResult) -> int:
        with self.lock:
            self.items.append(result)
            return len(self.items)

    def wait(self, count: int, timeout: float = 5.0) -> list[DirectiveResult]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= count:
                    return list(self.items)
            time.sleep(0.005)
        raise AssertionError(f"expected {count} results, got {self.items}")


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[DirectiveDispatcher, Results]]]:
    made: list[DirectiveDispatcher] = []

    def build(handler: DirectiveHandler | None, **kw: int) -> tuple[DirectiveDispatcher, Results]:
        results = Results()
        dispatcher = DirectiveDispatcher(results, handler, **kw)
        made.append(dispatcher)
        return dispatcher, results

    yield build
    for dispatcher in made:
        dispatcher.close()


def drain(i: str) -> pb.Directive:
    return pb.Directive(id=i, set_drain=pb.SetDrain(drained=True))


def test_without_a_handler_every_directive_fails_clearly(
    make: Callable[..., tuple[DirectiveDispatcher, Results]],
) -> None:
    dispatcher, results = make(None)
    dispatcher.dispatch(drain("d1"))
    [result] = results.wait(1)
    assert result == DirectiveResult("d1", ok=False, message="no directive handler")


def test_the_result_is_tied_to_the_directive_id(
    make: Callable[..., tuple[DirectiveDispatcher, Results]],
) -> None:
    dispatcher, results = make(lambda d: DirectiveResult("wrong-id", ok=True, message="ok"))
    dispatcher.dispatch(drain("d1"))
    assert results.wait(1)[0].directive_id == "d1"


def test_too_many_pending_directives_are_refused_busy(
    make: Callable[..., tuple[DirectiveDispatcher, Results]],
) -> None:
    gate = threading.Event()

    def slow(directive: Directive) -> DirectiveResult:
        gate.wait(5)
        return DirectiveResult(directive.id, ok=True)

    dispatcher, results = make(slow, workers=1, max_pending=2)
    for i in range(4):
        dispatcher.dispatch(drain(f"d{i}"))
    busy = results.wait(2)
    assert {r.directive_id for r in busy} == {"d2", "d3"}
    assert all(not r.ok and "busy" in r.message for r in busy)
    gate.set()
    done = results.wait(4)[2:]
    assert {r.directive_id for r in done} == {"d0", "d1"} and all(r.ok for r in done)
    stats = dispatcher.stats()
    assert (stats.handled, stats.rejected, stats.running) == (2, 2, 0)


def test_a_recently_handled_id_is_not_run_again(
    make: Callable[..., tuple[DirectiveDispatcher, Results]],
) -> None:
    calls: list[str] = []

    def handler(directive: Directive) -> DirectiveResult:
        calls.append(directive.id)
        return DirectiveResult(directive.id, ok=True)

    dispatcher, results = make(handler)
    dispatcher.dispatch(drain("d1"))
    results.wait(1)
    dispatcher.dispatch(drain("d1"))
    time.sleep(0.05)
    assert calls == ["d1"] and dispatcher.stats().duplicates == 1


def test_after_close_directives_are_refused(
    make: Callable[..., tuple[DirectiveDispatcher, Results]],
) -> None:
    dispatcher, results = make(lambda d: DirectiveResult(d.id, ok=True))
    dispatcher.close()
    dispatcher.dispatch(drain("late"))
    [result] = results.wait(1)
    assert not result.ok and result.directive_id == "late"
