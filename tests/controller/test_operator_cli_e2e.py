"""The CLI end to end against the real controller (grpc.aio, SQLite) on 127.0.0.1:0.

Two agents connect over AgentLink with a Hello and a fresh healthy report; the operator then
lists, drains, gates and undrains them through `gpufleet`.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from typer.testing import CliRunner, Result

from controller.operator_cli import EXIT_OK, EXIT_REFUSED, EXIT_REJECTED, get_app
from controller.server.app import Controller, ControllerSettings
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc
from tests.controller.conftest import hello, report

WAIT_S = 10.0
T = TypeVar("T")
_agent_link: Callable[[grpc.Channel], pb_grpc.AgentLinkStub] = pb_grpc.AgentLinkStub


class EventLoopThread:
    """An asyncio loop on a thread of its own, so the aio server runs beside sync clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT_S)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT_S)
        self.loop.close()


class Agent:
    """A node's stream from a sync client: send messages, collect what the controller says."""

    def __init__(self, target: str, node: str) -> None:
        self.node = node
        self._channel = grpc.insecure_channel(target)
        self._outbox: queue.Queue[pb.AgentMessage | None] = queue.Queue()
        self.acked = 0
        self._acked = threading.Condition()
        self._responses = _agent_link(self._channel).Connect(self._messages())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _messages(self) -> Iterator[pb.AgentMessage]:
        while (msg := self._outbox.get(timeout=60)) is not None:
            yield msg

    def _read(self) -> None:
        try:
            for reply in self._responses:
                if reply.WhichOneof("body") == "ack":
                    with self._acked:
                        self.acked = max(self.acked, reply.ack.seq)
                        self._acked.notify_all()
        except grpc.RpcError:
            pass

    def send(self, msg: pb.AgentMessage) -> None:
        self._outbox.put(msg)

    def wait_acked(self, seq: int) -> None:
        with self._acked:
            assert self._acked.wait_for(lambda: self.acked >= seq, WAIT_S), f"no ack {seq}"

    def close(self) -> None:
        self._outbox.put(None)
        self._responses.cancel()
        self._channel.close()
        self._reader.join(WAIT_S)


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[str]:
    loop = EventLoopThread()
    ctl = Controller(ControllerSettings(listen="127.0.0.1:0", db=tmp_path / "fleet.db"))
    loop.run(ctl.start())
    try:
        yield ctl.address
    finally:
        loop.run(ctl.stop(grace_s=0))
        loop.close()


@pytest.fixture
def agents(controller: str) -> Iterator[list[Agent]]:
    started = [Agent(controller, name) for name in ("node-a", "node-b")]
    try:
        for agent in started:
            agent.send(hello(agent.node))
            agent.send(report(1))
            agent.wait_acked(1)
        yield started
    finally:
        for agent in started:
            agent.close()


def cli(target: str, *args: str) -> Result:
    return CliRunner().invoke(get_app(), ["--controller", target, *args])


def test_operator_session_against_the_real_controller(controller: str, agents: list[Agent]) -> None:
    listed = cli(controller, "nodes", "--json")
    assert listed.exit_code == EXIT_OK, listed.output
    nodes = {n["name"]: n for n in json.loads(listed.stdout)}
    assert set(nodes) == {"node-a", "node-b"}
    assert nodes["node-a"]["sku"] == "h100_sxm"
    assert nodes["node-a"]["gpus"] == 8
    assert nodes["node-a"]["nvlink_domain"] == "dom-a"

    drained = cli(controller, "drain", "node-b", "--reason", "bad fan", "--json")
    assert drained.exit_code == EXIT_OK, drained.output
    assert json.loads(drained.stdout)["state"] == "drained"

    gated = cli(controller, "preflight", "--all", "--wait", "2", "--json")
    assert gated.exit_code == EXIT_REJECTED, gated.output
    body = json.loads(gated.stdout)
    assert body["admitted"] == ["node-a"]
    (rejected,) = body["rejected"]
    assert rejected["node"] == "node-b"
    assert rejected["reasons"][0]["check"] == "lifecycle"
    assert "drained" in rejected["reasons"][0]["message"]

    shown = cli(controller, "node", "show", "node-b", "--json")
    assert shown.exit_code == EXIT_OK, shown.output
    assert any(t["to_state"] == "drained" for t in json.loads(shown.stdout)["history"])

    undrained = cli(controller, "undrain", "node-b", "--json")
    assert undrained.exit_code == EXIT_OK, undrained.output
    assert json.loads(undrained.stdout)["state"] == "registered"

    again = cli(controller, "undrain", "node-b")
    assert again.exit_code == EXIT_REFUSED
    assert "FAILED_PRECONDITION" in again.stderr

    events = cli(controller, "events", "--node", "node-b", "--json")
    assert events.exit_code == EXIT_OK, events.output
    assert json.loads(events.stdout), "drain and undrain leave events"

    unknown = cli(controller, "node", "show", "ghost")
    assert unknown.exit_code == EXIT_REFUSED
    assert "NOT_FOUND" in unknown.stderr


def test_fresh_nodes_are_admitted_and_become_ready(controller: str, agents: list[Agent]) -> None:
    gated = cli(controller, "preflight", "node-a", "node-b", "--run", "dsv3", "--json")
    assert gated.exit_code == EXIT_OK, gated.output
    assert sorted(json.loads(gated.stdout)["admitted"]) == ["node-a", "node-b"]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        ready = json.loads(cli(controller, "nodes", "--state", "ready", "--json").stdout)
        if len(ready) == 2:
            break
        time.sleep(0.05)
    assert sorted(n["name"] for n in ready) == ["node-a", "node-b"]
