"""FleetAdmin.Burnin: check the request, run the orchestrator, stream its updates.

Served as an admin extension (`AdminExtensions.burnin`): `FleetAdminServicer` authenticates
and then calls `BurninServicer.Burnin`. Defaults the request leaves at 0 come from the
controller's preflight settings (the sizes and timeout a preflight re-test uses). Every
judged result is also a fleet event (kind "burnin"), so `gpufleet events` shows it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

import grpc

from controller.burnin.judge import DEFAULT_TARGETS, BurnInTarget
from controller.burnin.orchestrator import JudgedSink, run_burnin
from controller.burnin.params import BurninDefaults, BurninRequestError, params_from_request
from controller.clock import Clock
from controller.store import FleetStore
from protos.gpufleet.v1 import fleet_pb2

from .directives import DirectiveOutcome
from .preflight import PreflightSettings
from .service import FleetService
from .validate import WireError, check_node_name

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]
MAX_BURNIN_NODES = 100_000


class ServiceHost:
    """FleetService as the orchestrator's BurninHost.

    FleetService has no public write call, so `write` runs on the service's own store writer
    thread (the only writer of the database): a small `FleetService.write(fn)` would remove
    the reach into `_writer`.
    """

    def __init__(self, service: FleetService) -> None:
        self._service = service
        self.clock: Clock = service.clock

    def send_directive(self, node: str, directive: fleet_pb2.Directive) -> str:
        return self._service.send_directive(node, directive)

    async def wait_directive(self, directive_id: str, timeout_s: float) -> DirectiveOutcome:
        return await self._service.wait_directive(directive_id, timeout_s)

    async def read(self, fn: Callable[[FleetStore], T]) -> T:
        return await self._service.read(fn)

    async def write(self, fn: Callable[[FleetStore], T]) -> T:
        return await self._service._writer.call(fn)

    def connected(self, node: str) -> bool:
        return self._service.connected(node)


def defaults_from(settings: PreflightSettings,
                  rendezvous_host: str | None = None) -> BurninDefaults:
    """Burn-in defaults from the controller's preflight settings (and rendezvous host)."""
    return BurninDefaults(sizes=settings.burnin_sizes, timeout_s=settings.burnin_timeout_s,
                          rendezvous_host=rendezvous_host)


def check_names(request: fleet_pb2.BurninRequest) -> None:
    """Raise WireError for too many or malformed node names."""
    if len(request.nodes) > MAX_BURNIN_NODES or len(request.node_options) > MAX_BURNIN_NODES:
        raise WireError(grpc.StatusCode.INVALID_ARGUMENT, "too many nodes")
    for name in (*request.nodes, *request.node_options):
        check_node_name(name)


class BurninServicer:
    """Serves FleetAdmin.Burnin as an admin extension (the admin servicer authenticates).

    Wire it with `Controller(settings, extend=lambda service: AdminExtensions(
    burnin=BurninServicer(service, settings.preflight)))`. `rendezvous_host` is the
    controller's configured rendezvous address for multi-node groups (as for runs);
    `on_judged` is told every judged result stored (the burn-in metrics).
    """

    def __init__(
        self, service: FleetService, settings: PreflightSettings | None = None, *,
        rendezvous_host: str | None = None, defaults: BurninDefaults | None = None,
        targets: Mapping[str, BurnInTarget] = DEFAULT_TARGETS,
        on_judged: JudgedSink | None = None,
    ) -> None:
        self._host = ServiceHost(service)
        self._defaults = defaults or defaults_from(settings or PreflightSettings(),
                                                   rendezvous_host)
        self._targets = targets
        self._on_judged = on_judged

    async def Burnin(
        self, request: fleet_pb2.BurninRequest, context: Context
    ) -> AsyncIterator[fleet_pb2.BurninUpdate]:
        try:
            check_names(request)
            params = params_from_request(request, self._defaults)
        except WireError as err:
            await context.abort(err.code, err.message)
        except BurninRequestError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        async for update in run_burnin(self._host, params, targets=self._targets,
                                       on_judged=self._on_judged):
            yield update
