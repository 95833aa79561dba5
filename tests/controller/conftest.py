"""Shared helpers for the controller tests: wire-message factories and a temp store.

The factories build real protobuf messages the way an agent would; tests import them with
`from tests.controller.conftest import ...`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller.server import Controller, ControllerSettings, ServiceSettings
from controller.store import FleetStore, Inbound, NodeIdentity
from gpufleet_common.clock import Clock
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc


def hello(node: str, *, next_seq: int = 1, boot_id: str = "boot-1", gpus: int = 8,
          domain: str = "dom-a", sku: str = "h100_sxm") -> fleet_pb2.AgentMessage:
    """A Hello as the first message of a stream."""
    msg = fleet_pb2.AgentMessage(seq=0, sent_at=time.time())
    h = msg.hello
    h.node = node
    h.hostname = node
    h.agent_version = "0.1.0"
    h.sku = sku
    h.driver_version = "570.86.15"
    h.nvlink_domain = domain
    h.rack = "r1"
    h.next_seq = next_seq
    h.boot_id = boot_id
    for i in range(gpus):
        h.gpus.add(index=i, uuid=f"GPU-{node}-{i}", name="NVIDIA H100 80GB HBM3",
                   vbios_version="96.00.99.00.01", pci_bus_id=f"0000:{i:02x}:00.0")
    h.rails.add(device="mlx5_0", port=1, state="ACTIVE", rate_gbps=400.0, gpu=0)
    return msg


def report(seq: int, *, verdict: fleet_pb2.Severity = fleet_pb2.SEVERITY_OK, gpus: int = 8,
           findings: int = 0, sampled_at: float | None = None,
           directive_id: str = "") -> fleet_pb2.AgentMessage:
    """A report with `gpus` telemetry rows and `findings` findings of the verdict's severity."""
    msg = fleet_pb2.AgentMessage(seq=seq, sent_at=time.time())
    r = msg.report
    r.sampled_at = time.time() if sampled_at is None else sampled_at
    r.verdict = verdict
    r.action = fleet_pb2.ACTION_NONE
    r.sweep_duration_s = 0.004
    r.directive_id = directive_id
    for i in range(gpus):
        r.gpus.add(index=i, temperature_c=41.0 + i, power_w=350.0, energy_mj=123456 + i,
                   sm_clock_mhz=1980.0, gpu_util_pct=97.0, memory_temp_c=50.0)
    for i in range(findings):
        f = r.findings.add(check="thermal", severity=verdict, gpu=i % max(gpus, 1),
                           message=f"finding {i}", action=fleet_pb2.ACTION_NONE)
        f.evidence["temperature_c"].number = 88.5
    return msg


def xid(seq: int, *, code: int = 79, gpu: int = 3,
        severity: fleet_pb2.Severity = fleet_pb2.SEVERITY_CRITICAL) -> fleet_pb2.AgentMessage:
    """An XID event (79 = GPU fallen off the bus)."""
    msg = fleet_pb2.AgentMessage(seq=seq, sent_at=time.time())
    x = msg.event.xid
    x.xid = code
    x.gpu = gpu
    x.pci_bus_id = f"0000:{gpu:02x}:00.0"
    x.source = "simulated"
    x.message = "GPU has fallen off the bus"
    x.at = time.time()
    x.severity = severity
    x.action = fleet_pb2.ACTION_DRAIN
    return msg


def identity(node: str, **kw: str) -> NodeIdentity:
    """A NodeIdentity without going through a Hello."""
    return NodeIdentity(name=node, hostname=node, sku=kw.get("sku", "h100_sxm"),
                        nvlink_domain=kw.get("domain", "dom-a"), boot_id=kw.get("boot_id", "b1"),
                        gpus=tuple({"index": i, "uuid": f"GPU-{i}"} for i in range(8)))


def inbound(node: str, msg: fleet_pb2.AgentMessage) -> Inbound:
    """Wrap a message as the server's ingest path does."""
    return Inbound(node, msg, time.time(), time.monotonic())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh database file path."""
    return tmp_path / "fleet.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[FleetStore]:
    """An open store on a temp file."""
    s = FleetStore.open(db_path)
    try:
        yield s
    finally:
        s.close()


class RawAgent:
    """A minimal agent-side stream client on the generated stubs (not the real agent link)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.call: Any = fleet_pb2_grpc.AgentLinkStub(channel).Connect()  # type: ignore[no-untyped-call]
        self.directives: list[fleet_pb2.Directive] = []
        self.acks: list[int] = []

    async def send(self, msg: fleet_pb2.AgentMessage) -> None:
        """Write one message."""
        await self.call.write(msg)

    async def hello(self, node: str, **kw: Any) -> fleet_pb2.Welcome:
        """Send a Hello and return the Welcome."""
        await self.send(hello(node, **kw))
        reply = await asyncio.wait_for(self.call.read(), 10)
        assert reply.WhichOneof("body") == "welcome", reply
        return reply.welcome  # type: ignore[no-any-return]

    async def read(self, timeout: float = 10.0) -> fleet_pb2.ControllerMessage:
        """Read one controller message, recording acks and directives."""
        msg = await asyncio.wait_for(self.call.read(), timeout)
        if msg is grpc.aio.EOF:
            raise EOFError("stream ended")
        if msg.WhichOneof("body") == "ack":
            self.acks.append(msg.ack.seq)
        elif msg.WhichOneof("body") == "directive":
            self.directives.append(msg.directive)
        return msg  # type: ignore[no-any-return]

    async def until_ack(self, seq: int, timeout: float = 10.0) -> int:
        """Read until an ack >= seq arrives; return it."""
        deadline = time.monotonic() + timeout
        while not self.acks or self.acks[-1] < seq:
            await self.read(max(0.01, deadline - time.monotonic()))
        return self.acks[-1]

    async def until_directive(self, timeout: float = 10.0) -> fleet_pb2.Directive:
        """Read until a directive arrives; return it."""
        seen = len(self.directives)
        deadline = time.monotonic() + timeout
        while len(self.directives) == seen:
            await self.read(max(0.01, deadline - time.monotonic()))
        return self.directives[-1]

    async def status(self, timeout: float = 10.0) -> tuple[grpc.StatusCode, str]:
        """Drain the stream until it ends (recording directives); return its status."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                msg = await asyncio.wait_for(self.call.read(),
                                             max(0.01, deadline - time.monotonic()))
                if msg is grpc.aio.EOF:
                    break
                if msg.WhichOneof("body") == "directive":
                    self.directives.append(msg.directive)
        except grpc.aio.AioRpcError as err:
            return err.code(), err.details() or ""
        return await self.call.code(), await self.call.details()

    async def close(self) -> None:
        """Half-close and wait for the server to finish."""
        await self.call.done_writing()
        await self.status()


def settings(db: Path, **service: Any) -> ControllerSettings:
    """Insecure loopback settings on `db` with fast heartbeats off by default."""
    base: dict[str, Any] = {"heartbeat_check_s": 0.0, "batch_linger_s": 0.001}
    return ControllerSettings(listen="127.0.0.1:0", db=db,
                              service=ServiceSettings(**(base | service)))


async def start_controller(
    cfg: ControllerSettings, clock: Clock | None = None
) -> Controller:
    """Start a controller; the caller must stop it (in a finally)."""
    controller = Controller(cfg, clock=clock)
    await controller.start()
    return controller


@pytest.fixture
async def controller(db_path: Path) -> AsyncIterator[Controller]:
    """A running insecure controller on 127.0.0.1:0 with a temp database."""
    c = await start_controller(settings(db_path))
    try:
        yield c
    finally:
        await c.stop(grace_s=0)


@pytest.fixture
async def channel(controller: Controller) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to the running controller."""
    ch = grpc.aio.insecure_channel(controller.address)
    try:
        yield ch
    finally:
        await ch.close()
