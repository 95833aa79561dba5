"""Heartbeat loss and recovery (driven by a FakeClock), and the /metrics endpoint."""

from __future__ import annotations

import dataclasses
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from controller.server import Controller
from gpufleet_common.clock import FakeClock
from tests.controller.conftest import RawAgent, report, settings, start_controller

pytestmark = pytest.mark.timeout(60)


def states(controller: Controller) -> dict[str, str]:
    assert controller.service is not None
    return {n: s.value for n in ("node-a", "node-b")
            if (s := controller.service.state_of(n)) is not None}


async def test_silent_nodes_become_unreachable_and_recover_when_heard_from(
    db_path: Path,
) -> None:
    clock = FakeClock()
    controller = await start_controller(settings(db_path, heartbeat_timeout_s=30.0), clock)
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        service = controller.service
        assert service is not None
        a, b = RawAgent(channel), RawAgent(channel)
        await a.hello("node-a")
        await b.hello("node-b")
        clock.advance(20)
        await b.send(report(1))
        await b.until_ack(1)
        clock.advance(15)  # node-a silent for 35 s, node-b for 15 s
        moved = await service.check_heartbeats()
        assert [(t.node, t.from_state, t.to_state) for t in moved] == [
            ("node-a", "registered", "unreachable")]
        assert "no message for more than 30 s" in moved[0].cause
        assert states(controller) == {"node-a": "unreachable", "node-b": "registered"}
        assert await service.check_heartbeats() == []  # not declared twice
        await a.send(report(1))
        await a.until_ack(1)
        assert states(controller)["node-a"] == "registered"  # back, but must pass preflight
        await a.close()
        await b.close()
    finally:
        await channel.close()
        await controller.stop(grace_s=0)


async def test_drained_node_stays_drained_when_silent(db_path: Path) -> None:
    clock = FakeClock()
    controller = await start_controller(settings(db_path, heartbeat_timeout_s=10.0), clock)
    try:
        service = controller.service
        assert service is not None
        channel = grpc.aio.insecure_channel(controller.address)
        agent = RawAgent(channel)
        await agent.hello("node-a")
        await service.drain("node-a", "bad fan", "operator:alice")
        await agent.close()
        await channel.close()
        clock.advance(60)
        assert await service.check_heartbeats() == []
        assert states(controller) == {"node-a": "drained"}
    finally:
        await controller.stop(grace_s=0)


async def test_a_restarted_controller_gives_nodes_a_full_timeout_to_reconnect(
    db_path: Path,
) -> None:
    clock = FakeClock()
    first = await start_controller(settings(db_path, heartbeat_timeout_s=30.0), clock)
    try:
        channel = grpc.aio.insecure_channel(first.address)
        agent = RawAgent(channel)
        await agent.hello("node-a")
        await agent.close()
        await channel.close()
    finally:
        await first.stop(grace_s=0)
    clock.advance(3600)  # the controller was down for an hour
    second = await start_controller(settings(db_path, heartbeat_timeout_s=30.0), clock)
    try:
        assert second.service is not None
        assert await second.service.check_heartbeats() == []
        clock.advance(31)
        assert [t.to_state for t in await second.service.check_heartbeats()] == ["unreachable"]
    finally:
        await second.stop(grace_s=0)


async def test_metrics_endpoint_serves_the_controller_metrics(db_path: Path) -> None:
    cfg = dataclasses.replace(settings(db_path), metrics_listen="127.0.0.1:0")
    controller = await start_controller(cfg)
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        agent = RawAgent(channel)
        await agent.hello("node-a")
        for seq in (1, 2, 3):
            await agent.send(report(seq))
        await agent.until_ack(3)
        assert controller.metrics_server is not None
        url = f"http://127.0.0.1:{controller.metrics_server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for line in ('gpufleet_nodes{state="registered"} 1.0',
                     'gpufleet_nodes{state="drained"} 0.0',
                     'gpufleet_ingest_messages_total{kind="report"} 3.0',
                     'gpufleet_ingest_messages_total{kind="hello"} 1.0',
                     "gpufleet_agent_streams 1.0",
                     "gpufleet_ingest_queue_depth 0.0",
                     "gpufleet_ingest_latency_seconds_count 3.0"):
            assert line in text, line
        assert "gpufleet_directives_total" in text
        await agent.close()
    finally:
        await channel.close()
        await controller.stop(grace_s=0)


async def test_prune_removes_reports_past_retention(db_path: Path) -> None:
    clock = FakeClock(start=time.time())
    controller = await start_controller(settings(db_path, report_retention_s=60.0), clock)
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        assert controller.service is not None
        agent = RawAgent(channel)
        await agent.hello("node-a")
        for seq in (1, 2, 3):
            await agent.send(report(seq))
        await agent.until_ack(3)
        assert await controller.service.prune() == 0  # nothing is old yet
        clock.advance(120)
        assert await controller.service.prune() == 5  # 3 reports + 2 superseded evidence
        await agent.send(report(4))
        assert await agent.until_ack(4) == 4  # ingest carries on; seqs are not reused
        await agent.close()
    finally:
        await channel.close()
        await controller.stop(grace_s=0)


async def test_state_reasons_and_heartbeat_ages_for_scrape_time_metrics(db_path: Path) -> None:
    clock = FakeClock()
    controller = await start_controller(settings(db_path), clock)
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        service = controller.service
        assert service is not None
        agent = RawAgent(channel)
        await agent.hello("node-a")
        await service.drain("node-a", "fan", "operator:alice")
        clock.advance(7)
        assert service.state_reasons() == {"node-a": ("drained", "drained by operator:alice: fan")}
        assert service.heartbeat_ages() == {"node-a": 7.0}
        await agent.close()
    finally:
        await channel.close()
        await controller.stop(grace_s=0)
