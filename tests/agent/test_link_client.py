"""ControllerLink against a real grpc.aio server on loopback with a fake AgentLink servicer.

The fake stores durable messages by seq the way the contract says the controller does (a seq at
or below the highest stored is a replay: acknowledged again, never stored twice) and acks after
"storing". It runs on the test's event loop; the link runs on its own thread and loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent.link import (
    CheckNow,
    ControllerLink,
    Directive,
    DirectiveResult,
    LinkConfig,
    NodeIdentity,
    SetDrain,
    Spool,
    SpoolLimits,
)
from agent.link.spool_file import DB_FILE
from agent.model import (
    Action,
    Finding,
    GpuSample,
    NodeReport,
    NodeSample,
    Severity,
    SystemInfo,
    XidEvent,
)
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc

pytestmark = pytest.mark.timeout(30)

IDENTITY = NodeIdentity(node="node-a", hostname="node-a.cluster", sku="h100_sxm")
FAST = LinkConfig(
    backoff_base_s=0.02,
    backoff_cap_s=0.1,
    healthy_after_s=0.2,
    welcome_timeout_s=0.5,
    close_timeout_s=3.0,
)


class FakeController(fleet_pb2_grpc.AgentLinkServicer):
    """An in-memory AgentLink: stores, acks, and can misbehave on request."""

    def __init__(self) -> None:
        self.stored: dict[int, pb.AgentMessage] = {}
        self.received: list[int] = []  # every durable seq, in arrival order
        self.hellos: list[pb.Hello] = []
        self.ticks: list[pb.AgentMessage] = []
        self.last_stored = 0
        self.acking = True
        self.welcoming = True
        self.refuse: set[int] = set()  # seqs answered with INVALID_ARGUMENT
        self.outbox: asyncio.Queue[pb.ControllerMessage] | None = None

    def send(self, msg: pb.ControllerMessage) -> None:
        assert self.outbox is not None, "no stream"
        self.outbox.put_nowait(msg)

    async def Connect(self, request_iterator: Any, context: Any) -> None:
        first = await context.read()
        if not isinstance(first, pb.AgentMessage) or first.WhichOneof("body") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message must be Hello")
        self.hellos.append(first.hello)
        if not self.welcoming:
            await asyncio.sleep(30)
        welcome = pb.Welcome(last_stored_seq=self.last_stored, controller_id="fake")
        await context.write(pb.ControllerMessage(welcome=welcome))
        outbox: asyncio.Queue[pb.ControllerMessage] = asyncio.Queue()
        self.outbox = outbox

        async def drain() -> None:
            while True:
                await context.write(await outbox.get())

        writer = asyncio.create_task(drain())
        previous = 0
        try:
            while True:
                msg = await context.read()
                if not isinstance(msg, pb.AgentMessage):
                    return
                if msg.seq == 0:
                    self.ticks.append(msg)
                    continue
                if msg.seq <= previous or msg.seq in self.refuse:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"refused {msg.seq}")
                previous = msg.seq
                self.received.append(msg.seq)
                if msg.seq > self.last_stored:
                    self.stored[msg.seq] = msg
                    self.last_stored = msg.seq
                if self.acking:
                    outbox.put_nowait(pb.ControllerMessage(ack=pb.Ack(seq=self.last_stored)))
        finally:
            writer.cancel()


class Controller:
    """A restartable server around one FakeController, always on the same port."""

    def __init__(self, fake: FakeController) -> None:
        self.fake = fake
        self.port = 0
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        server = grpc.aio.server()
        fleet_pb2_grpc.add_AgentLinkServicer_to_server(self.fake, server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port(f"127.0.0.1:{self.port}")
        assert port, "could not bind"
        self.port = port
        await server.start()
        self.server = server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def controller() -> AsyncIterator[Controller]:
    ctl = Controller(FakeController())
    await ctl.start()
    try:
        yield ctl
    finally:
        await ctl.stop()


@pytest.fixture
def links() -> Iterator[Callable[..., ControllerLink]]:
    """Make started links; every one is closed (within its bound) at the end."""
    made: list[ControllerLink] = []

    def make(target: str, spool: Spool, **kwargs: Any) -> ControllerLink:
        kwargs.setdefault("config", FAST)
        link = ControllerLink(target, spool, IDENTITY, **kwargs)
        link.start()
        made.append(link)
        return link

    yield make
    for link in made:
        assert link.close(), "link did not stop within its bound"
        link.spool.close()


async def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def stop_link(link: ControllerLink) -> None:
    assert await asyncio.to_thread(link.close), "link did not stop within its bound"


def report(at: float) -> NodeReport:
    sample = NodeSample(
        hostname="node-a",
        timestamp=at,
        monotonic=at,
        system=SystemInfo(),
        gpus=(GpuSample(index=0, temperature_c=50.0),),
    )
    return NodeReport(sample=sample, findings=(Finding("gpu.temp", Severity.OK, "fine", gpu=0),))


def xid(code: int) -> XidEvent:
    return XidEvent(xid=code, timestamp=1.0, gpu=0)


def stored_reports(fake: FakeController) -> list[float]:
    return [m.report.sampled_at for _, m in sorted(fake.stored.items()) if m.HasField("report")]


# ---------------------------------------------------------------- delivery


async def test_reports_are_sent_acked_and_leave_the_spool(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    await eventually(lambda: link.state().connected, "connection")
    seqs = [link.submit_report(report(float(i))) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    fake = controller.fake
    await eventually(lambda: len(spool) == 0, "acks emptying the spool")
    assert sorted(fake.stored) == seqs and stored_reports(fake) == [0.0, 1.0, 2.0, 3.0, 4.0]
    state = link.state()
    assert state.connected and state.last_ack_seq == 5 and state.spool_depth == 0
    hello = fake.hellos[0]
    assert (hello.node, hello.sku, hello.next_seq, hello.boot_id) == (
        "node-a", "h100_sxm", 1, link.boot_id,
    )  # fmt: skip
    first = fake.stored[1]
    assert first.sent_at > 0 and first.report.findings[0].check == "gpu.temp"


async def test_outage_spools_to_disk_then_replays_in_order_without_gaps(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    link.submit_report(report(0.0))
    link.submit_report(report(1.0))
    await eventually(lambda: len(spool) == 0, "first reports acked")

    await controller.stop()
    await eventually(lambda: not link.state().connected, "noticing the outage")
    for i in range(2, 12):
        link.submit_report(report(float(i)))
    link.submit_xid(xid(79), Severity.CRITICAL, Action.RESET_GPU)
    await asyncio.sleep(0.2)  # several reconnect attempts fail meanwhile
    assert len(spool) == 11 and link.state().reconnects >= 1
    received_before = len(fake.received)

    await controller.start()
    await eventually(lambda: len(spool) == 0, "replay acked")
    replayed = fake.received[received_before:]
    assert replayed == list(range(3, 14))  # in order, no gaps, nothing from before
    assert sorted(fake.stored) == list(range(1, 14))
    assert stored_reports(fake) == [float(i) for i in range(12)]
    assert fake.stored[13].event.xid.xid == 79
    assert fake.hellos[-1].next_seq == 14
    assert link.state().connects == 2 and link.state().protocol_errors == 0


async def test_welcome_above_spooled_seqs_drops_them_instead_of_resending(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    fake.acking = False  # the controller stores but its acks never arrive
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    for i in range(5):
        link.submit_report(report(float(i)))
    await eventually(lambda: fake.last_stored == 5, "all five received")
    assert len(spool) == 5

    await controller.stop()
    for seq in (4, 5):  # the controller crashed having committed only 1..3
        del fake.stored[seq]
    fake.last_stored, fake.acking = 3, True
    received_before = len(fake.received)
    await controller.start()
    await eventually(lambda: len(spool) == 0, "the replay acked")
    assert fake.received[received_before:] == [4, 5]  # 1..3 were not sent again
    assert sorted(fake.stored) == [1, 2, 3, 4, 5]


async def test_a_restarted_agent_continues_numbering_and_replays(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    await controller.stop()  # the controller is away while the first agent runs
    spool = Spool(tmp_path)
    first = links(controller.target, spool)
    assert [first.submit_report(report(float(i))) for i in range(3)] == [1, 2, 3]
    await stop_link(first)
    spool.close()  # the agent process ends

    spool = Spool(tmp_path)
    second = links(controller.target, spool)
    assert second.boot_id != first.boot_id
    assert [second.submit_report(report(float(i))) for i in range(3, 5)] == [4, 5]
    await controller.start()
    await eventually(lambda: len(spool) == 0, "the replay acked")
    assert fake.received == [1, 2, 3, 4, 5]
    assert stored_reports(fake) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert fake.hellos[0].next_seq == 6


async def test_an_agent_that_lost_its_spool_numbers_above_the_controller(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    await controller.stop()
    fake.last_stored = 100  # what this node sent before its disk was wiped
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    link.submit_report(report(1.0))
    link.submit_report(report(2.0))
    await controller.start()
    await eventually(lambda: len(spool) == 0, "renumbered reports acked")
    assert sorted(fake.stored) == [101, 102] and stored_reports(fake) == [1.0, 2.0]
    assert spool.next_seq == 103 and fake.hellos[0].next_seq == 3


async def test_full_spool_during_an_outage_keeps_events_and_counts_drops(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    await controller.stop()
    spool = Spool(tmp_path, SpoolLimits(max_records=5, max_bytes=1 << 20))
    link = links(controller.target, spool)
    for i in range(4):
        link.submit_report(report(float(i)))
    link.submit_xid(xid(79), Severity.CRITICAL, Action.RESET_GPU)
    link.submit_xid(xid(48), Severity.CRITICAL, Action.RESET_GPU)
    for i in range(4, 8):
        link.submit_report(report(float(i)))
    assert len(spool) == 5 and link.state().dropped == 5
    await controller.start()
    await eventually(lambda: len(spool) == 0, "the replay acked")
    assert [m.event.xid.xid for m in fake.stored.values() if m.HasField("event")] == [79, 48]
    assert stored_reports(fake) == [5.0, 6.0, 7.0]  # the newest reports


async def test_a_corrupt_spool_tail_is_skipped_and_counted(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    await controller.stop()
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    for i in range(4):
        link.submit_report(report(float(i)))
    with sqlite3.connect(tmp_path / DB_FILE) as db:  # bit rot in the last record
        db.execute("UPDATE records SET body = substr(body, 1, size - 1) || X'00' WHERE seq = 4")
    await controller.start()
    await eventually(lambda: len(spool) == 0, "the replay acked")
    assert fake.received == [1, 2, 3]
    assert link.state().corrupt == 1
    assert link.submit_report(report(9.0)) == 5
    await eventually(lambda: 5 in fake.stored, "new reports flowing")


# ---------------------------------------------------------------- the controller's side


async def test_directives_reach_the_handler_and_results_go_back(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    seen: list[Directive] = []
    release = threading.Event()
    spool = Spool(tmp_path)
    link: ControllerLink | None = None

    def handle(directive: Directive) -> DirectiveResult | None:
        seen.append(directive)
        if isinstance(directive.kind, CheckNow):  # answered by a report, as the contract says
            assert link is not None
            link.submit_report(report(42.0), directive_id=directive.id)
            return None
        if isinstance(directive.kind, SetDrain) and directive.kind.reason == "slow":
            release.wait(5)
        return DirectiveResult(directive.id, ok=True, message="done")

    link = links(controller.target, spool, on_directive=handle)
    await eventually(lambda: fake.outbox is not None and link.state().connected, "connection")
    slow = pb.Directive(id="slow", set_drain=pb.SetDrain(drained=True, reason="slow"))
    fake.send(pb.ControllerMessage(directive=slow))
    await eventually(lambda: len(seen) == 1, "the slow handler running")
    # The receive loop is not blocked by the running handler: acks and directives still flow.
    link.submit_report(report(1.0))
    await eventually(lambda: len(spool) == 0, "a report acked while the handler runs")
    fake.send(pb.ControllerMessage(directive=pb.Directive(id="chk", check_now=pb.CheckNow())))
    fake.send(pb.ControllerMessage(directive=slow))  # a resend of a running directive
    fake.send(pb.ControllerMessage(directive=pb.Directive(id="bogus")))  # no kind
    await eventually(lambda: any(m.report.directive_id == "chk" for m in fake.stored.values()),
                     "the CheckNow answered by a report")  # fmt: skip
    release.set()

    def results() -> dict[str, pb.DirectiveResult]:
        return {
            m.result.directive_id: m.result for m in fake.stored.values() if m.HasField("result")
        }

    await eventually(lambda: set(results()) == {"slow", "bogus"}, "both results")
    assert results()["slow"].ok and results()["slow"].message == "done"
    assert not results()["bogus"].ok and "no directive kind" in results()["bogus"].message
    assert [d.id for d in seen] == ["slow", "chk"]  # the resend did not run it twice
    assert link.state().directives_rejected == 1


async def test_a_failing_handler_becomes_a_failed_result(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    def broken(directive: Directive) -> DirectiveResult | None:
        raise RuntimeError("disk on fire")

    fake = controller.fake
    link = links(controller.target, Spool(tmp_path), on_directive=broken)
    await eventually(lambda: fake.outbox is not None and link.state().connected, "connection")
    fake.send(pb.ControllerMessage(directive=pb.Directive(id="d1", set_drain=pb.SetDrain())))
    await eventually(lambda: any(m.HasField("result") for m in fake.stored.values()), "result")
    result = next(m.result for m in fake.stored.values() if m.HasField("result"))
    assert result.directive_id == "d1" and not result.ok and "disk on fire" in result.message
    assert link.state().connected  # and the link is fine


async def test_progress_ticks_are_sent_only_while_connected_and_never_spooled(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    class Tick:
        run_id, attempt, rank, step, loss, step_time_s, tokens, ts = "r", 0, 1, 7, 2.5, 0.1, 64, 9.0

    fake = controller.fake
    await controller.stop()
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    assert not link.send_progress(Tick())
    await controller.start()
    await eventually(lambda: link.state().connected, "connection")
    assert link.send_progress(Tick())
    await eventually(lambda: len(fake.ticks) == 1, "the tick")
    tick = fake.ticks[0]
    assert tick.seq == 0 and tick.event.progress.step == 7 and tick.event.progress.loss == 2.5
    assert spool.next_seq == 1 and len(spool) == 0


async def test_an_ack_above_what_was_sent_is_ignored(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    fake.acking = False
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    link.submit_report(report(1.0))
    link.submit_report(report(2.0))
    await eventually(lambda: fake.last_stored == 2, "both received")
    fake.send(pb.ControllerMessage(ack=pb.Ack(seq=999)))
    fake.send(pb.ControllerMessage(welcome=pb.Welcome()))  # a second Welcome is a protocol error
    await eventually(lambda: link.state().protocol_errors == 2, "protocol errors counted")
    assert len(spool) == 2 and link.state().connected
    fake.send(pb.ControllerMessage(ack=pb.Ack(seq=1)))
    await eventually(lambda: len(spool) == 1, "the real ack applied")
    assert link.state().last_ack_seq == 1


async def test_a_message_the_controller_keeps_refusing_is_given_up(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    fake.refuse = {2}
    spool = Spool(tmp_path)
    link = links(controller.target, spool)
    for i in range(3):
        link.submit_report(report(float(i)))
    await eventually(lambda: len(spool) == 0, "the spool unblocked", timeout=10)
    assert sorted(fake.stored) == [1, 3]
    assert link.state().rejected == 1


async def test_a_controller_that_never_welcomes_is_left_and_close_is_bounded(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    controller.fake.welcoming = False
    link = links(controller.target, Spool(tmp_path))
    await eventually(lambda: len(controller.fake.hellos) >= 2, "a retry after the timeout")
    assert not link.state().connected
    started = time.monotonic()
    await stop_link(link)
    assert time.monotonic() - started < 2.0


async def test_close_while_backing_off_is_prompt(tmp_path: Path) -> None:
    slow = LinkConfig(backoff_base_s=30.0, backoff_cap_s=60.0, close_timeout_s=3.0)
    spool = Spool(tmp_path)
    link = ControllerLink("127.0.0.1:1", spool, IDENTITY, config=slow, rand=lambda: 0.9)
    link.start()
    await asyncio.sleep(0.2)  # the first attempt failed; now waiting ~54 s
    started = time.monotonic()
    await stop_link(link)
    assert time.monotonic() - started < 1.5 and link.state().reconnects == 0
    spool.close()


def test_bad_configuration_is_refused_up_front(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        with pytest.raises(ValueError, match="HOST:PORT"):
            ControllerLink("nowhere", spool, IDENTITY)
        with pytest.raises(ValueError, match="node name"):
            ControllerLink("127.0.0.1:1", spool, NodeIdentity(node="bad name", hostname="h"))
        with pytest.raises(ValueError, match="backoff"):
            LinkConfig(backoff_base_s=2.0, backoff_cap_s=1.0)


async def test_submits_from_many_threads_arrive_once_each_in_seq_order(
    tmp_path: Path, controller: Controller, links: Callable[..., ControllerLink]
) -> None:
    fake = controller.fake
    spool = Spool(tmp_path)
    link = links(controller.target, spool)

    def submit(offset: int) -> list[int]:
        return [link.submit_report(report(float(offset + i))) for i in range(50)]

    per_thread = await asyncio.gather(*(asyncio.to_thread(submit, k * 1000) for k in range(4)))
    seqs = [s for chunk in per_thread for s in chunk]
    assert sorted(seqs) == list(range(1, 201))
    assert all(chunk == sorted(chunk) for chunk in per_thread)  # each thread's order is kept
    await eventually(lambda: len(spool) == 0, "all acked")
    assert fake.received == list(range(1, 201))
    assert link.state().protocol_errors == 0  # every Ack was believed
    sent = {s: m.report.sampled_at for s, m in fake.stored.items()}
    for k, chunk in enumerate(per_thread):
        assert [sent[s] for s in chunk] == [float(k * 1000 + i) for i in range(50)]
