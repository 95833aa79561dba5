"""AgentLink.Connect: one bidirectional stream per node (the rules are in fleet.proto).

The handler reads in a task of its own, so it can end the RPC when a newer stream replaces
this one; acks and directives go out through the stream's sender task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

from controller.store import Inbound
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc

from .security import OPERATOR_CN_PREFIX, peer_common_name
from .service import FleetService
from .streams import NodeStream
from .validate import WireError, check_hello, check_message

log = logging.getLogger(__name__)
FINAL_ACK_WAIT_S = 5.0


class AgentLinkServicer(fleet_pb2_grpc.AgentLinkServicer):
    """Serves agent streams into a FleetService."""

    def __init__(self, service: FleetService, *, tls: bool) -> None:
        self._service = service
        self._tls = tls

    def _identity(self, hello: fleet_pb2.Hello, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        if not self._tls:
            return hello.node
        cn = peer_common_name(context.auth_context())
        if cn is None:
            raise WireError(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
        if cn.startswith(OPERATOR_CN_PREFIX):
            raise WireError(grpc.StatusCode.PERMISSION_DENIED,
                            "an operator certificate cannot speak for a node")
        if hello.node != cn:
            raise WireError(grpc.StatusCode.PERMISSION_DENIED,
                            f"certificate is for {cn!r}; Hello claims {hello.node!r}")
        return cn

    async def Connect(
        self,
        request_iterator: Any,
        context: grpc.aio.ServicerContext[fleet_pb2.AgentMessage, fleet_pb2.ControllerMessage],
    ) -> None:
        service = self._service
        first: object = await context.read()
        if not isinstance(first, fleet_pb2.AgentMessage):  # EOF: the client went away
            return
        try:
            hello = check_hello(first)
            node = self._identity(hello, context)
        except WireError as err:
            service.metrics.rejected.labels(err.code.name).inc()
            await context.abort(err.code, err.message)
        try:
            registration = await service.register(node, hello)
        except Exception:
            log.exception("registering %s failed", node)
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "the controller could not store the Hello; retry later")
        stream = NodeStream(node, context.write)
        service.streams.attach(stream)
        service.metrics.agent_streams.inc()
        sender: asyncio.Task[None] | None = None
        reader: asyncio.Task[None] | None = None
        ended: asyncio.Task[bool] | None = None
        try:
            await context.write(fleet_pb2.ControllerMessage(welcome=fleet_pb2.Welcome(
                last_stored_seq=registration.last_seq,
                controller_id=service.settings.controller_id,
                report_interval_s=service.settings.report_interval_s,
                node=node,
            )))
            sender = asyncio.create_task(stream.run_sender())
            reader = asyncio.create_task(self._read(context, stream, registration.last_seq))
            ended = asyncio.create_task(stream.ended.wait())
            done, _ = await asyncio.wait({reader, ended, sender},
                                         return_when=asyncio.FIRST_COMPLETED)
            if reader in done:
                failure = reader.exception()
                if isinstance(failure, WireError):
                    service.metrics.rejected.labels(failure.code.name).inc()
                    await context.abort(failure.code, failure.message)
                if failure is not None:
                    raise failure
                # the agent half-closed: give it the acks for what it sent before finishing
                await stream.wait_acked(stream.submitted, FINAL_ACK_WAIT_S)
            elif ended in done:
                await context.abort(stream.end_code, stream.end_message)
            else:  # the sender died: the transport is gone
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        finally:
            for task in (reader, sender, ended):
                if task is not None:
                    task.cancel()
            service.streams.detach(stream)
            service.directives.fail_undelivered(node, stream.undelivered())
            service.metrics.agent_streams.dec()

    async def _read(
        self,
        context: grpc.aio.ServicerContext[fleet_pb2.AgentMessage, fleet_pb2.ControllerMessage],
        stream: NodeStream,
        welcome_seq: int,
    ) -> None:
        service = self._service
        node = stream.node
        clock = service.clock
        last = 0
        while True:
            msg: object = await context.read()
            if not isinstance(msg, fleet_pb2.AgentMessage):  # EOF
                return
            service.note_seen(node)
            check_message(msg, node)
            seq = msg.seq
            if seq == 0:
                service.deliver_ephemeral(node, msg)
                continue
            if seq <= last:
                raise WireError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"seq {seq} after {last}: seq must strictly increase")
            last = seq
            if seq <= welcome_seq:  # a replay of something already stored
                service.metrics.ingest_messages.labels("replay").inc()
                stream.offer_ack(welcome_seq)
                continue
            await service.submit(Inbound(node, msg, clock.time(), clock.monotonic(), stream.id))
            stream.submitted = seq
