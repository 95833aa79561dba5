"""Per-node controller metrics: state with its reason and heartbeat age, from fake sources on a
fresh ControllerMetrics, and from a real controller's FleetService."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from controller.metrics import ControllerMetrics
from controller.metrics_nodes import REASON_MAX
from gpufleet_common.clock import FakeClock
from tests.controller.conftest import RawAgent, settings, start_controller

pytestmark = pytest.mark.timeout(60)


class FakeNodes:
    """The two snapshots FleetService offers, as plain dicts a test edits."""

    def __init__(self) -> None:
        self.states: dict[str, tuple[str, str]] = {}
        self.ages: dict[str, float] = {}


def bound(nodes: FakeNodes) -> ControllerMetrics:
    metrics = ControllerMetrics()
    metrics.bind_node_details(lambda: nodes.states, lambda: nodes.ages)
    return metrics


def info_series(metrics: ControllerMetrics) -> list[dict[str, str]]:
    family = next(f for f in metrics.registry.collect() if f.name == "gpufleet_node_state_info")
    assert all(s.value == 1 for s in family.samples)
    return [s.labels for s in family.samples]


def test_one_state_series_per_node_with_its_reason() -> None:
    nodes = FakeNodes()
    metrics = bound(nodes)
    nodes.states = {"n1": ("ready", "preflight passed"), "n2": ("drained", "XID 79 on GPU 3")}

    assert info_series(metrics) == [
        {"node": "n1", "state": "ready", "reason": "preflight passed"},
        {"node": "n2", "state": "drained", "reason": "XID 79 on GPU 3"},
    ]

    nodes.states["n1"] = ("suspect", "thermal: GPU 2 at 91 C")

    assert info_series(metrics)[0] == {"node": "n1", "state": "suspect",
                                       "reason": "thermal: GPU 2 at 91 C"}
    assert len(info_series(metrics)) == 2  # the node's old state series is gone


def test_a_long_reason_is_truncated() -> None:
    nodes = FakeNodes()
    metrics = bound(nodes)
    nodes.states = {"n1": ("drained", "x" * 1000)}

    assert info_series(metrics)[0]["reason"] == "x" * REASON_MAX


def test_heartbeat_age_per_node_without_retired_nodes() -> None:
    nodes = FakeNodes()
    metrics = bound(nodes)
    nodes.states = {"n1": ("ready", ""), "n2": ("unreachable", "silent"), "old": ("retired", "")}
    nodes.ages = {"n1": 1.5, "n2": 95.0, "old": 86_400.0}
    age = "gpufleet_node_heartbeat_age_seconds"

    assert metrics.registry.get_sample_value(age, {"node": "n1"}) == 1.5
    assert metrics.registry.get_sample_value(age, {"node": "n2"}) == 95.0
    assert metrics.registry.get_sample_value(age, {"node": "old"}) is None


async def test_the_service_feeds_state_reason_and_age(db_path: Path) -> None:
    clock = FakeClock()
    controller = await start_controller(settings(db_path), clock)
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        agent = RawAgent(channel)
        await agent.hello("node-a")
        assert controller.service is not None
        await controller.service.drain("node-a", "fan", "operator:alice")
        clock.advance(7)
        get = controller.metrics.registry.get_sample_value

        assert get("gpufleet_node_state_info", {
            "node": "node-a", "state": "drained", "reason": "drained by operator:alice: fan",
        }) == 1
        assert get("gpufleet_node_heartbeat_age_seconds", {"node": "node-a"}) == 7.0
        await agent.close()
    finally:
        await channel.close()
        await controller.stop(grace_s=0)


async def test_reasons_survive_a_controller_restart(db_path: Path) -> None:
    first = await start_controller(settings(db_path), FakeClock())
    channel = grpc.aio.insecure_channel(first.address)
    try:
        agent = RawAgent(channel)
        await agent.hello("node-a")
        assert first.service is not None
        await first.service.drain("node-a", "fan", "operator:alice")
        await agent.close()
    finally:
        await channel.close()
        await first.stop(grace_s=0)

    second = await start_controller(settings(db_path), FakeClock())
    try:
        assert second.metrics.registry.get_sample_value("gpufleet_node_state_info", {
            "node": "node-a", "state": "drained", "reason": "drained by operator:alice: fan",
        }) == 1
    finally:
        await second.stop(grace_s=0)
