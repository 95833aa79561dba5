"""Composition of the controller's services beyond the fleet itself (run supervision, burn-in
orchestration) into the admin API's extensions; the one place that wires them."""

from __future__ import annotations

from collections.abc import Callable

from controller.server.admin import AdminExtensions
from controller.server.burnin_admin import BurninServicer
from controller.server.preflight import PreflightSettings
from controller.server.run_rpcs import SupervisorRpcs
from controller.server.service import FleetService
from controller.supervisor.supervisor import Supervisor, SupervisorSettings


def build_extensions(preflight: PreflightSettings, *, rendezvous_host: str | None = None,
                     run_workdir: str = "") -> Callable[[FleetService], AdminExtensions]:
    """A factory the Controller calls with its FleetService once it has started."""

    def extend(service: FleetService) -> AdminExtensions:
        supervisor = Supervisor(service, preflight, SupervisorSettings(
            rendezvous_host=rendezvous_host, workdir=run_workdir))
        return AdminExtensions(
            runs=SupervisorRpcs(supervisor), stop=supervisor.close,
            burnin=BurninServicer(service, preflight, rendezvous_host=rendezvous_host))

    return extend
