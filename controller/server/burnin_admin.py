"""FleetAdmin.Burnin: check the request, run the orchestrator, stream its updates.

Served as an admin extension (`AdminExtensions.burnin`): `FleetAdminServicer` authenticates
and then calls `BurninServicer.Burnin`. Defaults the request leaves at 0 come from the
controller's preflight settings (the sizes and timeout a preflight re-test uses), and so do
the per-SKU targets it is judged by (preflight's own re-test goes through the same
orchestrator: `controller.burnin.retest`). Every judged result is also a fleet event (kind
"burnin"), so `gpufleet events` shows it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc

from controller.burnin.judge import BurnInTarget
from controller.burnin.orchestrator import JudgedSink, run_burnin
from controller.burnin.params import BurninDefaults, BurninRequestError, params_from_request
from controller.burnin.retest import ServiceHost
from protos.gpufleet.v1 import fleet_pb2

from .preflight import PreflightSettings
from .service import FleetService
from .validate import WireError, check_node_name

Context = grpc.aio.ServicerContext[Any, Any]
MAX_BURNIN_NODES = 100_000


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
    `targets` (default: the settings' `burnin_targets`) the per-SKU floors and cohort rules;
    `on_judged` is told every judged result stored (the burn-in metrics).
    """

    def __init__(
        self, service: FleetService, settings: PreflightSettings | None = None, *,
        rendezvous_host: str | None = None, defaults: BurninDefaults | None = None,
        targets: Mapping[str, BurnInTarget] | None = None,
        on_judged: JudgedSink | None = None,
    ) -> None:
        settings = settings or PreflightSettings()
        self._host = ServiceHost(service)
        self._defaults = defaults or settings.burnin_defaults(rendezvous_host)
        self._targets = settings.burnin_targets if targets is None else targets
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
