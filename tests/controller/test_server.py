"""The controller over real gRPC on loopback with a real SQLite file: the AgentLink stream."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]

from controller.server import Controller
from protos.gpufleet.v1 import fleet_pb2
from tests.controller.conftest import RawAgent, hello, report, settings, start_controller, xid

pytestmark = pytest.mark.timeout(60)


def rows(db: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Read the database through a separate connection, as another process would."""
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


async def test_hello_registers_the_node_and_welcomes_it(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    agent = RawAgent(channel)
    welcome = await agent.hello("node-a")
    assert welcome.last_stored_seq == 0
    assert welcome.node == "node-a"
    assert welcome.report_interval_s == 1.0
    assert rows(db_path, "SELECT name, state, sku, nvlink_domain FROM nodes") == [
        ("node-a", "registered", "h100_sxm", "dom-a")]
    assert controller.service is not None and controller.service.connected("node-a")
    await agent.close()


async def test_reports_are_stored_before_they_are_acked(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    agent = RawAgent(channel)
    await agent.hello("node-a")
    for seq in range(1, 21):
        await agent.send(report(seq))
        if seq % 5 == 0:
            acked = await agent.until_ack(seq)
            stored = {s for (s,) in rows(db_path, "SELECT seq FROM reports WHERE node = ?",
                                         "node-a")}
            assert set(range(1, acked + 1)) <= stored, "acked before it was stored"
    assert agent.acks == sorted(agent.acks) and agent.acks[-1] == 20
    assert len(set(agent.acks)) == len(agent.acks), "acks only increase"
    await agent.close()


async def test_fatal_xid_drains_the_node_with_its_evidence(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    agent = RawAgent(channel)
    await agent.hello("node-a")
    await agent.send(report(1))
    await agent.send(xid(2, code=79, gpu=3))
    await agent.until_ack(2)
    ((state, reason),) = rows(db_path, "SELECT state, state_reason FROM nodes")
    assert (state, reason) == ("drained", "xid 79 on gpu 3")
    ((frm, to, evidence_id, actor),) = rows(
        db_path, "SELECT from_state, to_state, evidence_id, actor FROM transitions "
                 "WHERE to_state = 'drained'")
    assert (frm, to, actor) == ("registered", "drained", "controller")
    ((kind, verdict, source),) = rows(db_path, "SELECT kind, verdict, source FROM evidence "
                                               "WHERE id = ?", evidence_id)
    assert (kind, verdict, source) == ("xid", "critical", "xid:2")
    await agent.close()


async def test_critical_report_without_fatal_action_makes_the_node_suspect(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    agent = RawAgent(channel)
    await agent.hello("node-a")
    await agent.send(report(1, verdict=fleet_pb2.SEVERITY_CRITICAL, findings=1))
    await agent.until_ack(1)
    assert rows(db_path, "SELECT state FROM nodes") == [("suspect",)]
    await agent.send(report(2))  # one good sweep does not clear suspicion
    await agent.until_ack(2)
    assert rows(db_path, "SELECT state FROM nodes") == [("suspect",)]
    await agent.close()


async def test_replays_after_reconnect_are_acked_without_duplicates(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    first = RawAgent(channel)
    await first.hello("node-a")
    for seq in (1, 2, 3):
        await first.send(report(seq))
    await first.until_ack(3)
    await first.close()
    again = RawAgent(channel)
    welcome = await again.hello("node-a", boot_id="boot-2")
    assert welcome.last_stored_seq == 3
    for seq in range(1, 6):  # an agent that replays everything it still has
        await again.send(report(seq))
    assert await again.until_ack(5) == 5
    assert rows(db_path, "SELECT seq, COUNT(*) FROM reports GROUP BY seq") == [
        (s, 1) for s in range(1, 6)]
    assert rows(db_path, "SELECT COUNT(*) FROM evidence WHERE kind = 'health'") == [(5,)]
    await again.close()


@pytest.mark.parametrize(
    ("first", "then", "detail"),
    [
        (report(1), None, "first message of a stream must be a Hello"),
        (hello("bad name!"), None, "must match"),
        (hello("node-a"), "bad_enum", "unknown severity"),
        (hello("node-a"), "giant_string", "limit 4096"),
        (hello("node-a"), "seq_backwards", "seq must strictly increase"),
        (hello("node-a"), "second_hello", "only as the first message"),
        (hello("node-a"), "too_many_findings", "limit 256"),
    ],
)
async def test_malformed_streams_get_invalid_argument_and_the_server_keeps_serving(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path,
    first: fleet_pb2.AgentMessage, then: str | None, detail: str,
) -> None:
    agent = RawAgent(channel)
    await agent.send(first)
    if then is not None:
        await agent.read()  # the Welcome
        if then == "bad_enum":
            msg = report(1)
            msg.report.verdict = 99  # type: ignore[assignment]
            await agent.send(msg)
        elif then == "giant_string":
            msg = report(1, findings=1)
            msg.report.findings[0].message = "x" * 5000
            await agent.send(msg)
        elif then == "seq_backwards":
            await agent.send(report(5))
            await agent.send(report(5))
        elif then == "second_hello":
            await agent.send(hello("node-a"))
        elif then == "too_many_findings":
            await agent.send(report(1, findings=300))
    code, details = await agent.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert detail in details
    survivor = RawAgent(channel)
    await survivor.hello("node-z")
    await survivor.send(report(1))
    assert await survivor.until_ack(1) == 1
    await survivor.close()
    # nothing of the bad message was stored (the survivor's ack means the queue got past it);
    # with seq_backwards, only the valid first report 5 was
    expected = [(5,)] if then == "seq_backwards" else []
    assert rows(db_path, "SELECT seq FROM reports WHERE node = 'node-a'") == expected


async def test_oversize_message_is_resource_exhausted_and_the_server_keeps_serving(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    agent = RawAgent(channel)
    await agent.hello("node-a")
    msg = report(1)
    msg.report.findings.add(check="x", message="y" * (5 * 1024 * 1024))
    await agent.send(msg)
    code, details = await agent.status()
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    other = RawAgent(channel)
    welcome = await other.hello("node-a")
    assert welcome.last_stored_seq == 0  # nothing of the oversize message was stored
    await other.send(report(1))
    assert await other.until_ack(1) == 1
    await other.close()


async def test_a_second_stream_for_a_node_replaces_the_first(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    old = RawAgent(channel)
    await old.hello("node-a")
    new = RawAgent(channel)
    await new.hello("node-a")
    code, details = await old.status()
    assert code == grpc.StatusCode.ABORTED and "replaced" in details
    await new.send(report(1))
    assert await new.until_ack(1) == 1
    assert controller.service is not None and controller.service.connected("node-a")
    await new.close()
    await asyncio.sleep(0.05)
    assert not controller.service.connected("node-a")


async def test_message_claiming_another_node_is_permission_denied(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    agent = RawAgent(channel)
    await agent.hello("node-a")
    msg = report(1)
    msg.node = "node-b"
    await agent.send(msg)
    code, details = await agent.status()
    assert code == grpc.StatusCode.PERMISSION_DENIED and "node-b" in details


async def test_health_service_reports_serving(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", "gpufleet.v1.AgentLink", "gpufleet.v1.FleetAdmin"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_directive_round_trip_resolves_with_the_fresh_evidence(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    service = controller.service
    assert service is not None
    agent = RawAgent(channel)
    await agent.hello("node-a")
    directive_id = service.send_directive(
        "node-a", fleet_pb2.Directive(check_now=fleet_pb2.CheckNow(window_s=0.5)))
    received = await agent.until_directive()
    assert received.id == directive_id and received.check_now.window_s == 0.5
    waiter = asyncio.create_task(service.wait_directive(directive_id, 10))
    await agent.send(report(1, directive_id=directive_id))
    outcome = await waiter
    assert outcome.ok and outcome.answer == "report" and outcome.node == "node-a"
    assert outcome.evidence_id is not None
    await agent.close()


async def test_only_the_addressed_node_can_answer_a_directive(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    service = controller.service
    assert service is not None
    a, b = RawAgent(channel), RawAgent(channel)
    await a.hello("node-a")
    await b.hello("node-b")
    directive_id = service.send_directive("node-a", fleet_pb2.Directive(
        stop_ranks=fleet_pb2.StopRanks(run_id="r1")))
    forged = fleet_pb2.AgentMessage(seq=1)
    forged.result.directive_id = directive_id
    forged.result.ok = True
    await b.send(forged)
    await b.until_ack(1)
    with pytest.raises(TimeoutError):
        await service.wait_directive(directive_id, 0.3)
    await a.close()
    await b.close()


async def test_directive_to_a_disconnected_node_is_refused(controller: Controller) -> None:
    from controller.server import NotConnected

    assert controller.service is not None
    with pytest.raises(NotConnected):
        controller.service.send_directive("nobody", fleet_pb2.Directive(
            check_now=fleet_pb2.CheckNow()))


async def test_ephemeral_progress_reaches_listeners_without_being_stored(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    service = controller.service
    assert service is not None
    seen: list[tuple[str, bool]] = []
    service.add_listener(lambda d: seen.append((d.node, d.durable)))
    agent = RawAgent(channel)
    await agent.hello("node-a")
    tick = fleet_pb2.AgentMessage(seq=0)
    tick.event.progress.run_id = "r1"
    tick.event.progress.step = 7
    await agent.send(tick)
    await agent.send(report(1))
    await agent.until_ack(1)
    assert seen == [("node-a", False), ("node-a", True)]
    assert rows(db_path, "SELECT COUNT(*) FROM events WHERE kind = 'progress'") == [(0,)]
    await agent.close()


async def test_many_nodes_concurrently_each_get_their_own_acks(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    agents = [RawAgent(channel) for _ in range(20)]
    await asyncio.gather(*(a.hello(f"n{i:02d}") for i, a in enumerate(agents)))

    async def run(agent: RawAgent) -> int:
        for seq in range(1, 11):
            await agent.send(report(seq))
        return await agent.until_ack(10)

    assert await asyncio.gather(*(run(a) for a in agents)) == [10] * 20
    assert rows(db_path, "SELECT COUNT(*), COUNT(DISTINCT node) FROM reports") == [(200, 20)]
    await asyncio.gather(*(a.close() for a in agents))


async def test_half_close_still_gets_the_final_acks(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    agent = RawAgent(channel)
    await agent.hello("node-a")
    for seq in range(1, 51):
        await agent.send(report(seq))
    await agent.call.done_writing()  # an agent shutting down cleanly
    acks: list[int] = []
    while (msg := await asyncio.wait_for(agent.call.read(), 10)) is not grpc.aio.EOF:
        acks.append(msg.ack.seq)
    assert acks and acks[-1] == 50
    assert await agent.call.code() == grpc.StatusCode.OK


async def test_graceful_stop_acks_what_it_stored_then_ends_streams(db_path: Path) -> None:
    controller = await start_controller(settings(db_path))
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        agent = RawAgent(channel)
        await agent.hello("node-a")
        for seq in range(1, 101):
            await agent.send(report(seq))
        await controller.stop(grace_s=2.0)
        acked = [m.ack.seq for m in await drain(agent) if m.WhichOneof("body") == "ack"]
        code, details = await agent.status()
        assert code == grpc.StatusCode.UNAVAILABLE and "shutting down" in details
        stored = {s for (s,) in rows(db_path, "SELECT seq FROM reports")}
        assert acked and set(range(1, max(acked) + 1)) <= stored
    finally:
        await channel.close()
        await controller.stop(grace_s=0)


async def drain(agent: RawAgent) -> list[fleet_pb2.ControllerMessage]:
    """Every message still readable before the stream ends."""
    out: list[fleet_pb2.ControllerMessage] = []
    try:
        while (msg := await asyncio.wait_for(agent.call.read(), 10)) is not grpc.aio.EOF:
            out.append(msg)
    except grpc.aio.AioRpcError:
        return out
    return out
