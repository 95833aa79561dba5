"""Preflight's own burn-in re-test is a JUDGED burn-in, like `gpufleet burnin`: real controller
(grpc.aio, SQLite) over loopback, agents scripted on the raw stream answering RunBurnIn with an
NCCL sweep (an 8-GPU h100_sxm node with degraded NVLink measures a low all-reduce busbw).

- a node below its SKU's floor passes "completed with correct sums" but preflight `--burnin`
  rejects it with the judge's reason and admits its healthy peers; `node show` shows the
  verdict the gate cited; the next preflight admits a peer on its stored verdict and re-tests
  and judges the (now suspect) slow node again; `gpufleet burnin` judges it the same way;
- a node burned in alone (a new node joining) is judged against its cohort: the fleet's recent
  passing verdicts fill it, so a node above the floor but far below its peers is an outlier;
- the gate reads the stored verdicts only once they are stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from typer.testing import CliRunner

from controller.burnin.retest import ServiceHost
from controller.extensions import build_extensions
from controller.operator_cli import get_app
from controller.server import Controller, PreflightSettings
from controller.store import FleetStore
from protos.gpufleet.v1 import fleet_pb2
from tests.controller.conftest import RawAgent, report, settings
from tests.controller.test_burnin_admin import (
    answer_burnins,
    burnin_answer,
    burnin_controller,
    stub,
)

pytestmark = pytest.mark.timeout(60)
T = TypeVar("T")
M = 1 << 20
NCCL = "2.21.5"
FLOOR = "burn-in failed: burnin_below_floor: all-reduce busbw 180.0 GB/s is below the h100_sxm"


@pytest.fixture
async def controller(db_path: Path) -> AsyncIterator[Controller]:
    """A controller with the default (per-SKU) targets and the `gpufleet burnin` extension."""
    cfg = dataclasses.replace(settings(db_path), preflight=PreflightSettings(
        burnin_sizes=(M, 4 * M), burnin_timeout_s=20.0))
    async with burnin_controller(cfg) as c:
        yield c


async def join(channel: grpc.aio.Channel, *names: str) -> dict[str, RawAgent]:
    """Connect 8-GPU h100_sxm agents with fresh health evidence."""
    agents = {}
    for name in names:
        agent = agents[name] = RawAgent(channel)
        await agent.hello(name, sku="h100_sxm")
        await agent.send(report(1))
        await agent.until_ack(1)
    return agents


async def preflight(channel: grpc.aio.Channel, *nodes: str) -> list[fleet_pb2.PreflightUpdate]:
    request = fleet_pb2.PreflightRequest(nodes=list(nodes), burnin=True)
    return [u async for u in stub(channel).Preflight(request)]


async def answer_nccl(agent: RawAgent, busbw: float, seq: int) -> fleet_pb2.RunBurnIn:
    """Play an agent answering one RunBurnIn with an NCCL sweep at `busbw`."""
    (directive,) = await answer_burnins(agent, busbw, seq, backend="nccl", nccl=NCCL)
    return directive


async def answer_retest(agent: RawAgent, busbw: float, seq: int) -> list[str]:
    """Play a suspect node's agent: its re-test is a CheckNow (answered with a healthy report)
    and a RunBurnIn (answered with an NCCL sweep at `busbw`). Returns the kinds seen."""
    kinds = []
    for seq_ in (seq, seq + 1):
        directive = await agent.until_directive(timeout=10)
        kinds.append(str(directive.WhichOneof("kind")))
        await agent.send(report(seq_, directive_id=directive.id)
                         if kinds[-1] == "check_now"
                         else burnin_answer(directive, busbw, seq_, backend="nccl", nccl=NCCL))
    return sorted(kinds)


def cli(address: str, *args: str) -> Any:
    return CliRunner().invoke(get_app(), ["--controller", address, *args])


async def test_a_node_below_the_sku_floor_is_rejected_with_the_judges_reason(
    controller: Controller,
) -> None:
    speeds = {"good-a": 472.0, "good-b": 468.0, "slow": 180.0}  # slow: NVLink at ~40 %
    async with grpc.aio.insecure_channel(controller.address) as ch:
        agents = await join(ch, *speeds)
        plays = {n: asyncio.create_task(answer_nccl(agents[n], busbw, 2))
                 for n, busbw in speeds.items()}
        updates = await preflight(ch, *speeds)
        sent = {n: await p for n, p in plays.items()}
        *progress, last = updates
        verdicts = {v.node: v for v in last.result.verdicts}
        assert {n for n, v in verdicts.items() if v.admitted} == {"good-a", "good-b"}
        (reason,) = verdicts["slow"].reasons
        assert reason.check == "burnin" and reason.severity == fleet_pb2.SEVERITY_CRITICAL
        assert reason.message.startswith(FLOOR), reason.message
        assert all((d.world_size, d.local_ranks, list(d.sizes_bytes)) == (8, 8, [M, 4 * M])
                   for d in sent.values())
        phases = [(p.progress.phase, p.progress.node) for p in progress]
        assert {("burn-in", n) for n in speeds} <= set(phases), phases
        assert (progress[-1].progress.done, progress[-1].progress.total) == (3, 3)

        shown = await stub(ch).GetNode(fleet_pb2.GetNodeRequest(name="slow"))
        assert (shown.node.state, shown.burnin.passed) == ("suspect", False)
        assert shown.burnin.check == "burnin_below_floor"
        assert shown.burnin.evidence_id == reason.evidence_id
        assert [s.busbw_gbps for s in shown.burnin.sizes] == [180.0, 180.0]
        as_cli = await asyncio.to_thread(cli, controller.address, "node", "show", "slow", "--json")
        assert json.loads(as_cli.stdout)["burnin"]["check"] == "burnin_below_floor"
        service = controller.service
        assert service is not None
        stored = await service.read(lambda store: store.latest_evidence("good-a", "burnin"))
        assert stored is not None and stored.detail["judged"] is True, stored
        assert stored.detail["cohort"] == "h100_sxm/570.86.15/nccl 2.21.5/8"

        # good-a's verdict is fresh: admitted as is; slow is suspect now: re-tested, judged again
        play_retest = asyncio.create_task(answer_retest(agents["slow"], 180.0, 3))
        again = await preflight(ch, "slow", "good-a")
        assert await play_retest == ["check_now", "run_burnin"]
        verdicts = {v.node: v for v in again[-1].result.verdicts}
        assert verdicts["good-a"].admitted and not verdicts["slow"].admitted
        (second,) = verdicts["slow"].reasons
        assert second.message.startswith(FLOOR) and second.evidence_id != reason.evidence_id
        assert len(agents["good-a"].directives) == 1

        play = asyncio.create_task(answer_nccl(agents["slow"], 180.0, 5))
        burned = [u async for u in stub(ch).Burnin(fleet_pb2.BurninRequest(nodes=["slow"]))]
        await play
        (result,) = burned[-1].result.nodes  # `gpufleet burnin` judges it the same way
        assert (result.check, result.message) == (shown.burnin.check, shown.burnin.message)
        for agent in agents.values():
            await agent.close()


async def test_a_node_burned_in_alone_is_judged_against_its_peers_recent_verdicts(
    controller: Controller,
) -> None:
    peers = {"peer-a": 470.0, "peer-b": 468.0, "peer-c": 472.0}
    async with grpc.aio.insecure_channel(controller.address) as ch:
        agents = await join(ch, *peers)
        plays = [asyncio.create_task(answer_nccl(agents[n], busbw, 2))
                 for n, busbw in peers.items()]
        first = await preflight(ch, *peers)  # three alone: no cohort yet, the floor only
        await asyncio.gather(*plays)
        assert all(v.admitted for v in first[-1].result.verdicts), first[-1]

        agents |= await join(ch, "newcomer")  # no burn-in evidence yet: re-tested alone
        play = asyncio.create_task(answer_nccl(agents["newcomer"], 400.0, 2))
        updates = await preflight(ch, *peers, "newcomer")
        await play
        verdicts = {v.node: v for v in updates[-1].result.verdicts}
        assert {n for n, v in verdicts.items() if v.admitted} == set(peers)
        (reason,) = verdicts["newcomer"].reasons
        assert reason.message.startswith("burn-in failed: burnin_outlier: all-reduce busbw "
                                         "400.00 GB/s is 15% below its cohort's median 470.00"), \
            reason.message
        assert all(len(agents[n].directives) == 1 for n in peers)  # their verdicts were fresh
        service = controller.service
        assert service is not None
        stored = await service.read(lambda store: store.latest_evidence("newcomer", "burnin"))
        assert stored is not None and stored.detail["baseline_verdicts"] == 3
        assert stored.detail["cohort_median_gbps"] == 470.0
        for agent in agents.values():
            await agent.close()


async def test_the_gate_waits_for_the_verdicts_to_be_stored(
    controller: Controller, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last node's burn-in ends before its pass is judged and stored: a slow store write
    must not let the gate read the agent's raw (unjudged, "ok") result instead."""
    write = ServiceHost.write

    async def slow_write(self: ServiceHost, fn: Callable[[FleetStore], T]) -> T:
        await asyncio.sleep(0.5)
        return await write(self, fn)

    monkeypatch.setattr(ServiceHost, "write", slow_write)
    async with grpc.aio.insecure_channel(controller.address) as ch:
        agents = await join(ch, "slow")
        play = asyncio.create_task(answer_nccl(agents["slow"], 180.0, 2))
        updates = await preflight(ch, "slow")
        await play
        (verdict,) = updates[-1].result.verdicts
        assert not verdict.admitted and verdict.reasons[0].message.startswith(FLOOR), verdict
        await agents["slow"].close()


async def test_preflight_verdicts_reach_the_burnin_metrics(db_path: Path) -> None:
    """The controller as `gpufleet-controller serve` builds it (its extensions): a verdict the
    preflight re-test stores shows in the burn-in families at once, not after a restart."""
    cfg = dataclasses.replace(settings(db_path), preflight=PreflightSettings(
        burnin_sizes=(M, 4 * M), burnin_timeout_s=20.0))
    c = Controller(cfg, extend=build_extensions(cfg.preflight))
    await c.start()
    try:
        speeds = {"good-a": 472.0, "good-b": 468.0, "slow": 180.0}
        async with grpc.aio.insecure_channel(c.address) as ch:
            agents = await join(ch, *speeds)
            plays = [asyncio.create_task(answer_nccl(agents[n], bw, 2))
                     for n, bw in speeds.items()]
            await preflight(ch, *speeds)
            await asyncio.gather(*plays)
        get = c.metrics.registry.get_sample_value
        for node in speeds:
            assert get("gpufleet_burnin_timestamp_seconds", {"node": node}) is not None, node
        samples = [s for m in c.metrics.registry.collect()
                   if m.name == "gpufleet_burnin_busbw_bytes_per_second" for s in m.samples]
        measured = {s.labels["node"]: s.value for s in samples}
        assert measured["slow"] == pytest.approx(180e9)
        assert measured["good-a"] == pytest.approx(472e9)
    finally:
        await c.stop(grace_s=0)


async def test_a_burnin_that_cannot_even_be_planned_rejects_and_never_hangs(
        db_path: Path) -> None:
    """A misconfigured re-test (more sizes than an agent takes) is an answer, not a hang."""
    cfg = dataclasses.replace(settings(db_path), preflight=PreflightSettings(
        burnin_sizes=tuple(M * (i + 1) for i in range(65)), burnin_timeout_s=20.0))
    async with burnin_controller(cfg) as c, grpc.aio.insecure_channel(c.address) as ch:
        await join(ch, "lonely")
        updates = await asyncio.wait_for(preflight(ch, "lonely"), 30)
    (verdict,) = updates[-1].result.verdicts
    assert not verdict.admitted
    assert any("burn-in re-test failed" in r.message and "sizes" in r.message
               for r in verdict.reasons), verdict.reasons
