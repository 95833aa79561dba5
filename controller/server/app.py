"""The controller process: gRPC server (AgentLink, FleetAdmin, health), metrics, lifecycle.

`Controller` wires a FleetService to a grpc.aio server; `start()` binds and serves, `stop()`
stops accepting, lets in-flight calls finish (grace), commits what is queued and closes the
store. Tests start one on 127.0.0.1:0 and read `controller.port`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from grpc_health.v1.health import aio as health_aio  # type: ignore[import-untyped]

from controller.metrics import ControllerMetrics, MetricsServer, serve_metrics
from gpufleet_common.clock import Clock, SystemClock
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc

from .admin import AdminExtensions, FleetAdminServicer
from .agent_link import AgentLinkServicer
from .gc_tuning import GcSettings, GcTuner
from .preflight import PreflightSettings
from .security import AdminAuth, OperatorTokens, TlsFiles, server_credentials
from .service import FleetService, ServiceSettings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ControllerSettings:
    """Everything a controller process needs (the CLI builds it from the config)."""

    listen: str
    db: Path
    metrics_listen: str | None = None
    tls: TlsFiles | None = None
    operator_tokens: OperatorTokens | None = None
    service: ServiceSettings = field(default_factory=ServiceSettings)
    preflight: PreflightSettings = field(default_factory=PreflightSettings)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    gc: GcSettings = field(default_factory=lambda: GcSettings(0.0, 0.0))  # off unless asked


def split_host_port(address: str) -> tuple[str, int]:
    """"HOST:PORT" (or "[v6]:PORT") as (host, port); raises ValueError."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


class Controller:
    """One running controller."""

    def __init__(
        self,
        settings: ControllerSettings,
        *,
        clock: Clock | None = None,
        metrics: ControllerMetrics | None = None,
        extend: Callable[[FleetService], AdminExtensions] | None = None,
    ) -> None:
        """`extend` builds the FleetAdmin RPCs other parts serve (runs, burn-in) once the
        FleetService exists."""
        self.settings = settings
        self._extend = extend
        self.extensions = AdminExtensions()
        self.clock = clock or SystemClock()
        self.metrics = metrics or ControllerMetrics()
        self.service: FleetService | None = None
        self.port = 0
        self.metrics_server: MetricsServer | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health_aio.HealthServicer | None = None
        self._gc = GcTuner(settings.gc, self.clock)

    @property
    def address(self) -> str:
        """HOST:PORT the gRPC server is bound to."""
        host, _ = split_host_port(self.settings.listen)
        return f"{host}:{self.port}"

    async def start(self) -> None:
        """Open the store, bind, and start serving."""
        settings = self.settings
        service = FleetService.open(str(settings.db), self.clock, self.metrics, settings.service)
        self.service = service
        try:
            await service.start()
            server = grpc.aio.server(options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
                ("grpc.so_reuseport", 0),
            ])
            self._server = server
            tls = settings.tls is not None
            agent_link = AgentLinkServicer(service, tls=tls)
            if self._extend is not None:
                self.extensions = self._extend(service)
                if self.extensions.start is not None:
                    await self.extensions.start()
            admin = FleetAdminServicer(service, AdminAuth(settings.operator_tokens, tls=tls),
                                       settings.preflight, self.extensions)
            fleet_pb2_grpc.add_AgentLinkServicer_to_server(  # type: ignore[no-untyped-call]
                agent_link, server)
            fleet_pb2_grpc.add_FleetAdminServicer_to_server(  # type: ignore[no-untyped-call]
                admin, server)
            self._health = health_aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            if settings.tls is not None:
                self.port = server.add_secure_port(settings.listen,
                                                   server_credentials(settings.tls))
            else:
                self.port = server.add_insecure_port(settings.listen)
            await server.start()
            for name in ("", fleet_pb2.DESCRIPTOR.services_by_name["AgentLink"].full_name,
                         fleet_pb2.DESCRIPTOR.services_by_name["FleetAdmin"].full_name):
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
            if settings.metrics_listen:
                host, port = split_host_port(settings.metrics_listen)
                self.metrics_server = serve_metrics(self.metrics, host, port)
            self._gc.start()
        except BaseException:
            await self.stop(grace_s=0)
            raise

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop serving (in-flight calls get `grace_s`), store what is queued, close."""
        await self._gc.stop()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
            self._health = None
        if self.service is not None and self._server is not None and grace_s > 0:
            # store what is queued and ack it while the streams are still open, then end them
            await self.service.pipeline.flush(grace_s / 2)
            self.service.streams.end_all(grpc.StatusCode.UNAVAILABLE,
                                         "the controller is shutting down; reconnect")
        if self._server is not None:
            await self._server.stop(grace_s)
            self._server = None
        if self.extensions.stop is not None:
            await self.extensions.stop()
            self.extensions.stop = None
        if self.service is not None:
            await self.service.stop()
            self.service = None
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None

    async def wait_for_termination(self) -> None:
        """Return when the server stops."""
        if self._server is not None:
            await self._server.wait_for_termination()
