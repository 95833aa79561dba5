"""FleetAdmin over real gRPC: operator auth, drain/undrain with audit, listings, preflight."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller.server import Controller, OperatorTokens, PreflightSettings
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc
from tests.controller.conftest import RawAgent, report, settings, start_controller

pytestmark = pytest.mark.timeout(60)
TOKEN = "s3cret-token-for-alice"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
async def secured(db_path: Path) -> AsyncIterator[Controller]:
    """An insecure-loopback controller that still requires an operator token."""
    cfg = dataclasses.replace(
        settings(db_path), operator_tokens=OperatorTokens.parse(f"alice {TOKEN}\n"),
        preflight=PreflightSettings(max_age_s=60.0, timeout_s=1.0))
    c = await start_controller(cfg)
    try:
        yield c
    finally:
        await c.stop(grace_s=0)


@pytest.fixture
async def chan(secured: Controller) -> AsyncIterator[grpc.aio.Channel]:
    ch = grpc.aio.insecure_channel(secured.address)
    try:
        yield ch
    finally:
        await ch.close()


def admin(channel: grpc.aio.Channel) -> Any:
    return fleet_pb2_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]


async def connect(channel: grpc.aio.Channel, node: str, *reports: fleet_pb2.AgentMessage,
                  **hello: Any) -> RawAgent:
    agent = RawAgent(channel)
    await agent.hello(node, **hello)
    for msg in reports:
        await agent.send(msg)
    if reports:
        await agent.until_ack(reports[-1].seq)
    return agent


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong-token-xxxxxxxx"),),
                                      (("authorization", TOKEN),)])
async def test_admin_calls_without_a_valid_token_are_unauthenticated(
    chan: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin(chan).ListNodes(fleet_pb2.ListNodesRequest(), metadata=metadata)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_drain_and_undrain_are_audited_and_told_to_the_agent(
    secured: Controller, chan: grpc.aio.Channel, db_path: Path
) -> None:
    agent = await connect(chan, "node-a", report(1))
    view = await admin(chan).Drain(fleet_pb2.DrainRequest(node="node-a", reason="fan noise"),
                                   metadata=AUTH)
    assert view.state == "drained" and "fan noise" in view.state_reason and view.connected
    directive = await agent.until_directive()
    assert directive.set_drain.drained and directive.set_drain.reason == "fan noise"
    view = await admin(chan).Undrain(fleet_pb2.DrainRequest(node="node-a", reason="fixed"),
                                     metadata=AUTH)
    assert view.state == "registered"  # back through preflight before it is ready
    assert not (await agent.until_directive()).set_drain.drained
    conn = sqlite3.connect(db_path)
    try:
        audit = conn.execute("SELECT actor, action, target FROM audit ORDER BY id").fetchall()
        moves = conn.execute("SELECT from_state, to_state, actor FROM transitions "
                             "WHERE actor != 'controller' ORDER BY id").fetchall()
    finally:
        conn.close()
    assert audit == [("operator:alice", "operator_drain", "node-a"),
                     ("operator:alice", "operator_undrain", "node-a")]
    assert moves == [("registered", "drained", "operator:alice"),
                     ("drained", "registered", "operator:alice")]
    await agent.close()


async def test_drain_errors_map_to_status_codes(chan: grpc.aio.Channel) -> None:
    agent = await connect(chan, "node-a")
    cases = [
        (fleet_pb2.DrainRequest(node="ghost"), "Drain", grpc.StatusCode.NOT_FOUND),
        (fleet_pb2.DrainRequest(node="node-a"), "Undrain", grpc.StatusCode.FAILED_PRECONDITION),
        (fleet_pb2.DrainRequest(node="../etc"), "Drain", grpc.StatusCode.INVALID_ARGUMENT),
        (fleet_pb2.DrainRequest(node="node-a", reason="x" * 2000), "Drain",
         grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for request, method, code in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await getattr(admin(chan), method)(request, metadata=AUTH)
        assert err.value.code() == code, (method, request)
    await agent.close()


async def test_list_nodes_filters_and_get_node_details(chan: grpc.aio.Channel) -> None:
    a = await connect(chan, "node-a", report(1, verdict=fleet_pb2.SEVERITY_WARN, findings=2),
                      sku="gb300", domain="d1")
    b = await connect(chan, "node-b", report(1), sku="h100_sxm", domain="d2")
    stub = admin(chan)
    every = await stub.ListNodes(fleet_pb2.ListNodesRequest(), metadata=AUTH)
    assert [(n.name, n.verdict, n.gpus, n.connected) for n in every.nodes] == [
        ("node-a", "warn", 8, True), ("node-b", "ok", 8, True)]
    only = await stub.ListNodes(fleet_pb2.ListNodesRequest(sku="gb300"), metadata=AUTH)
    assert [n.name for n in only.nodes] == ["node-a"]
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListNodes(fleet_pb2.ListNodesRequest(state="sleepy"), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = await stub.GetNode(fleet_pb2.GetNodeRequest(name="node-a"), metadata=AUTH)
    assert [f.check for f in detail.findings] == ["thermal", "thermal"]
    assert detail.findings[0].severity == fleet_pb2.SEVERITY_WARN
    assert detail.findings[0].evidence["temperature_c"].number == 88.5
    assert len(detail.gpus) == 8 and detail.gpus[0].vbios_version == "96.00.99.00.01"
    assert [t.to_state for t in detail.history] == ["registered"]
    events = await stub.ListEvents(fleet_pb2.ListEventsRequest(node="node-b"), metadata=AUTH)
    assert {e.node for e in events.events} == {"node-b"}
    assert [e.kind for e in events.events] == ["transition"]
    await a.close()
    await b.close()


async def answer_checks(agent: RawAgent, seq: int, *, verdict: fleet_pb2.Severity,
                        count: int = 1) -> None:
    """Play an agent that answers CheckNow directives with a fresh report."""
    for _ in range(count):
        directive = await agent.until_directive()
        assert directive.WhichOneof("kind") == "check_now"
        await agent.send(report(seq, verdict=verdict, findings=1 if verdict != 1 else 0,
                                directive_id=directive.id))
        seq += 1


async def test_preflight_retests_only_stale_nodes_and_gates_on_fresh_evidence(
    secured: Controller, chan: grpc.aio.Channel
) -> None:
    old = time.time() - 3600
    fresh = await connect(chan, "fresh", report(1))
    stale = await connect(chan, "stale", report(1, sampled_at=old))
    silent = await connect(chan, "silent", report(1, sampled_at=old))
    sick = await connect(chan, "sick", report(1, sampled_at=old))
    answering = [asyncio.create_task(answer_checks(stale, 2, verdict=fleet_pb2.SEVERITY_OK)),
                 asyncio.create_task(answer_checks(sick, 2, verdict=fleet_pb2.SEVERITY_CRITICAL))]
    updates = [u async for u in admin(chan).Preflight(
        fleet_pb2.PreflightRequest(all=True, timeout_s=1.0), metadata=AUTH)]
    await asyncio.gather(*answering)
    *progress, last = updates
    assert last.WhichOneof("body") == "result"
    assert all(u.WhichOneof("body") == "progress" for u in progress)
    assert progress[-1].progress.done == progress[-1].progress.total == 4
    assert progress[1].progress.retesting == 3
    verdicts = {v.node: v for v in last.result.verdicts}
    assert {n for n, v in verdicts.items() if v.admitted} == {"fresh", "stale"}
    assert [r.check for r in verdicts["sick"].reasons] == ["thermal"]
    assert verdicts["sick"].reasons[0].evidence_age_s < 60
    silent_checks = {r.check for r in verdicts["silent"].reasons}
    assert silent_checks == {"health_evidence", "retest"}
    metrics = secured.metrics.registry
    assert metrics.get_sample_value("gpufleet_directives_total", {"kind": "check_now"}) == 3
    assert (await silent.until_directive()).WhichOneof("kind") == "check_now"
    listing = await admin(chan).ListNodes(fleet_pb2.ListNodesRequest(), metadata=AUTH)
    assert {n.name: n.state for n in listing.nodes} == {
        "fresh": "ready", "stale": "ready", "silent": "suspect", "sick": "suspect"}
    for agent in (fresh, stale, silent, sick):
        await agent.close()
    assert fresh.directives == []  # fresh evidence is not re-tested


async def test_preflight_rejects_unknown_and_disconnected_nodes_with_reasons(
    chan: grpc.aio.Channel
) -> None:
    gone = await connect(chan, "gone", report(1, sampled_at=time.time() - 3600))
    await gone.close()
    updates = [u async for u in admin(chan).Preflight(
        fleet_pb2.PreflightRequest(nodes=["gone", "ghost"]), metadata=AUTH)]
    verdicts = {v.node: v for v in updates[-1].result.verdicts}
    assert not verdicts["ghost"].admitted
    assert verdicts["ghost"].reasons[0].message == "node is not registered"
    assert not verdicts["gone"].admitted
    assert any("not connected" in r.message for r in verdicts["gone"].reasons)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in admin(chan).Preflight(fleet_pb2.PreflightRequest(), metadata=AUTH):
            pass
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_insecure_controller_without_token_file_accepts_admin_calls(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    reply = await admin(channel).ListNodes(fleet_pb2.ListNodesRequest())
    assert list(reply.nodes) == []


class FakeRuns:
    """Stands in for the run supervisor's RPCs: remembers what reached it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def StartRun(self, request: fleet_pb2.StartRunRequest,
                       context: Any) -> fleet_pb2.RunDetail:
        self.calls.append(f"start {request.source}")
        return fleet_pb2.RunDetail(run=fleet_pb2.RunView(name="r1", state="pending"))

    async def GetRun(self, request: fleet_pb2.RunRequest, context: Any) -> fleet_pb2.RunDetail:
        self.calls.append(f"get {request.name}")
        return fleet_pb2.RunDetail(run=fleet_pb2.RunView(name=request.name))

    async def ListRuns(self, request: fleet_pb2.ListRunsRequest,
                       context: Any) -> fleet_pb2.ListRunsResponse:
        return fleet_pb2.ListRunsResponse()

    async def StopRun(self, request: fleet_pb2.RunRequest, context: Any) -> fleet_pb2.RunDetail:
        return fleet_pb2.RunDetail()


async def test_run_rpcs_are_authenticated_then_served_by_the_extension(db_path: Path) -> None:
    from controller.server import AdminExtensions, Controller

    runs = FakeRuns()
    stopped: list[bool] = []

    async def on_stop() -> None:
        stopped.append(True)

    cfg = dataclasses.replace(settings(db_path),
                              operator_tokens=OperatorTokens.parse(f"alice {TOKEN}\n"))
    controller = Controller(cfg, extend=lambda service: AdminExtensions(runs=runs, stop=on_stop))
    await controller.start()
    try:
        async with grpc.aio.insecure_channel(controller.address) as ch:
            detail = await admin(ch).StartRun(fleet_pb2.StartRunRequest(source="x.toml"),
                                              metadata=AUTH)
            assert detail.run.state == "pending"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await admin(ch).GetRun(fleet_pb2.RunRequest(name="r1"))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in admin(ch).Burnin(fleet_pb2.BurninRequest(all=True),
                                                metadata=AUTH):
                    pass
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await controller.stop(grace_s=0)
    assert runs.calls == ["start x.toml"]
    assert stopped == [True]


async def test_without_a_supervisor_run_rpcs_are_unimplemented(
    controller: Controller, channel: grpc.aio.Channel
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await admin(channel).ListRuns(fleet_pb2.ListRunsRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
