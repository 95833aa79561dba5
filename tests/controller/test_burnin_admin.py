"""FleetAdmin.Burnin over real loopback gRPC and SQLite, with agents scripted on the raw stream
(no torch): request checks, the RunBurnIn on the wire, judged evidence, and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from typer.testing import CliRunner

from controller.operator_cli import EXIT_REJECTED, get_app
from controller.server import AdminExtensions, Controller, ControllerSettings, OperatorTokens
from controller.server.burnin_admin import BurninServicer
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc
from tests.controller.conftest import RawAgent, report, settings

TOKEN = "burnin-operator-token-0123"
AUTH = (("authorization", f"Bearer {TOKEN}"),)
M = 1 << 20


@contextlib.asynccontextmanager
async def burnin_controller(cfg: ControllerSettings) -> AsyncIterator[Controller]:
    """A running controller on `cfg` that serves `gpufleet burnin` (the admin extension)."""
    c = Controller(cfg, extend=lambda service: AdminExtensions(
        burnin=BurninServicer(service, cfg.preflight)))
    await c.start()
    try:
        yield c
    finally:
        await c.stop(grace_s=0)


@pytest.fixture
async def controller(db_path: Path) -> AsyncIterator[Controller]:
    cfg = dataclasses.replace(settings(db_path),
                              operator_tokens=OperatorTokens.parse(f"alice {TOKEN}\n"))
    async with burnin_controller(cfg) as c:
        yield c


def stub(channel: grpc.aio.Channel) -> Any:
    return fleet_pb2_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]


async def burnin(channel: grpc.aio.Channel, **kw: Any) -> list[fleet_pb2.BurninUpdate]:
    return [u async for u in stub(channel).Burnin(fleet_pb2.BurninRequest(**kw), metadata=AUTH)]


def burnin_answer(directive: fleet_pb2.Directive, busbw: float, seq: int, *,
                  backend: str = "gloo", nccl: str = "") -> fleet_pb2.AgentMessage:
    """The agent's answer to a RunBurnIn: a sweep measuring `busbw` at every size."""
    d = directive.run_burnin
    msg = fleet_pb2.AgentMessage(seq=seq, sent_at=0.0)
    msg.result.directive_id = directive.id
    msg.result.ok = True
    msg.result.message = "burn-in complete"
    result = msg.result.burnin
    result.burnin_id, result.backend, result.world_size = d.burnin_id, backend, d.world_size
    result.nccl_version = nccl
    for size in d.sizes_bytes:
        result.sizes.add(bytes=size, time_us=1.0, algbw_gbps=busbw, busbw_gbps=busbw)
    return msg


async def answer_burnins(agent: RawAgent, busbw: float, seq: int, count: int = 1, *,
                         backend: str = "gloo", nccl: str = "") -> list[fleet_pb2.RunBurnIn]:
    """Play the agent: answer `count` RunBurnIn directives with a measured sweep."""
    seen = []
    for _ in range(count):
        directive = await agent.until_directive(timeout=10)
        seen.append(directive.run_burnin)
        await agent.send(burnin_answer(directive, busbw, seq, backend=backend, nccl=nccl))
        seq += 1
    return seen


async def test_bad_requests_are_refused_with_every_problem(controller: Controller) -> None:
    async with grpc.aio.insecure_channel(controller.address) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await burnin(ch, nodes=["a"], sizes="12X", repeats=-1)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == (
            "invalid burn-in request: sizes: not a size: '12X' (use e.g. 1M, 64MiB, 1G); "
            "repeats must be 0..32 (0 = once), got -1")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await burnin(ch, nodes=["bad name!"])
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub(ch).Burnin(fleet_pb2.BurninRequest(all=True)):
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_the_wire_path_from_directive_to_judged_evidence(controller: Controller) -> None:
    async with grpc.aio.insecure_channel(controller.address) as ch:
        agent = RawAgent(ch)
        await agent.hello("raw-a", gpus=4)
        await agent.send(report(1, gpus=4))
        await agent.until_ack(1)
        play = asyncio.create_task(answer_burnins(agent, 3.5, seq=2))
        updates = await burnin(ch, nodes=["raw-a", "ghost"], sizes="1M,4M", iters=3,
                               timeout_s=20)
        (d,) = await play
    assert (d.world_size, d.local_ranks, d.rank_offset, d.master_port) == (4, 4, 0, 0)
    assert list(d.sizes_bytes) == [M, 4 * M] and d.iters == 3 and d.timeout_s == 20
    progress = [u.progress for u in updates if u.WhichOneof("body") == "progress"]
    assert [(p.phase, p.done, p.total) for p in progress] == [("single-node", 0, 1),
                                                              ("single-node", 1, 1)]
    result = updates[-1].result
    assert [(r.node, r.passed, r.check) for r in result.nodes] == [
        ("raw-a", True, "burnin"), ("ghost", False, "burnin_skipped")]
    assert [s.busbw_gbps for s in result.nodes[0].sizes] == [3.5, 3.5]
    service = controller.service
    assert service is not None
    evidence = await service.read(lambda store: store.latest_evidence("raw-a", "burnin"))
    assert evidence is not None and evidence.detail["judged"] is True
    assert str(evidence.id) == result.nodes[0].evidence_id
    agents_own = await service.read(lambda store: store.evidence(evidence.id - 1))
    assert agents_own is not None and agents_own.source == "result:2"  # superseded, not lost


async def test_the_cli_prints_the_report_and_exits_1_for_a_named_node_it_could_not_test(
    controller: Controller, tmp_path: Path,
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    async with grpc.aio.insecure_channel(controller.address) as ch:
        agent = RawAgent(ch)
        await agent.hello("raw-a", gpus=2)
        await agent.send(report(1, gpus=2))
        await agent.until_ack(1)
        play = asyncio.create_task(answer_burnins(agent, 2.0, seq=2))
        shown = await asyncio.to_thread(
            CliRunner().invoke, get_app(),
            ["--controller", controller.address, "--token-file", str(token), "burnin", "raw-a",
             "ghost", "--sizes", "1M", "--ranks-per-node", "1"])
        (d,) = await play
    assert d.local_ranks == 1
    assert shown.exit_code == EXIT_REJECTED, shown.output
    assert "raw-a" in shown.stdout and "passed" in shown.stdout and "skipped" in shown.stdout
    assert "1 burn-in(s) failed: ghost" in shown.stderr


async def test_json_lists_every_node_and_group(controller: Controller, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    async with grpc.aio.insecure_channel(controller.address) as ch:
        agents = {n: RawAgent(ch) for n in ("raw-a", "raw-b")}
        for name, agent in agents.items():
            await agent.hello(name, gpus=2, domain="nvl-1")
            await agent.send(report(1, gpus=2))
            await agent.until_ack(1)
        plays = [asyncio.create_task(answer_burnins(a, 2.0 + i, seq=2, count=2))
                 for i, a in enumerate(agents.values())]
        shown = await asyncio.to_thread(
            CliRunner().invoke, get_app(),
            ["--controller", controller.address, "--token-file", str(token), "burnin", "--all",
             "--multi-node", "--sizes", "1M", "--ranks-per-node", "1", "--port", "31555",
             "--json"])
        sent = [await p for p in plays]
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    assert [n["node"] for n in body["nodes"]] == ["raw-a", "raw-b"]
    (group,) = body["groups"]
    assert (group["node"], group["members"], group["passed"]) == ("domain:nvl-1",
                                                                  ["raw-a", "raw-b"], True)
    group_directives = [d[1] for d in sent]
    assert [(d.rank_offset, d.world_size, d.master_port) for d in group_directives] == [
        (0, 2, 31555), (1, 2, 31555)]
    assert group["busbw_gbps"] == 2.0  # the master's (rank 0's) numbers
