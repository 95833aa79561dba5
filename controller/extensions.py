"""Composition of the controller's services beyond the fleet itself (run supervision, burn-in
orchestration) into the admin API's extensions; the one place that wires them, and their
metrics: the supervisor's runs and the latest judged burn-ins are bound to the controller's
/metrics here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from controller.burnin.orchestrator import EVIDENCE_KIND
from controller.fleet.lifecycle import NodeState
from controller.metrics_burnin import LatestBurnins
from controller.server.admin import AdminExtensions
from controller.server.burnin_admin import BurninServicer
from controller.server.preflight import PreflightSettings
from controller.server.run_admin import SupervisorRpcs
from controller.server.service import FleetService
from controller.slurm.batch import DEFAULT_PROGRESS_SOCKET, BatchOptions
from controller.slurm.commands import SlurmCommands, SubprocessSlurm
from controller.slurm.launcher import SlurmLauncher
from controller.slurm.loop import SlurmSyncLoop
from controller.slurm.sync import SlurmNodeSync
from controller.supervisor.slurm_backend import SlurmBackend
from controller.supervisor.supervisor import Supervisor, SupervisorSettings

log = logging.getLogger(__name__)


def build_extensions(
    preflight: PreflightSettings, *, rendezvous_host: str | None = None, run_workdir: str = "",
    slurm_sync_s: float | None = None, slurm: SlurmCommands | None = None,
    slurm_job_dir: Path | None = None, slurm_progress_socket: str = DEFAULT_PROGRESS_SOCKET,
) -> Callable[[FleetService], AdminExtensions]:
    """A factory the Controller calls with its FleetService once it has started (on its
    event loop). `slurm_sync_s`: mirror node lifecycle into Slurm every that many seconds and
    after every transition; `slurm` replaces the real scontrol/sinfo seam (SLURM_CONF from env).
    `slurm_job_dir`: runs start as Slurm batch jobs (scripts and logs there) instead of through
    the agents.
    """

    def extend(service: FleetService) -> AdminExtensions:
        backend = None
        if slurm_job_dir is not None:
            launcher = SlurmLauncher(
                slurm if slurm is not None else SubprocessSlurm(os.environ),
                BatchOptions(workdir=Path(run_workdir or "."), log_dir=slurm_job_dir,
                             progress_socket=slurm_progress_socket))
            backend = SlurmBackend(launcher, lambda: drained_nodes(service), service.clock.time,
                                   sees_progress=bool(slurm_progress_socket))
        supervisor = Supervisor(service, preflight, SupervisorSettings(
            rendezvous_host=rendezvous_host, workdir=run_workdir), backend=backend)
        burnins = LatestBurnins()
        service.metrics.bind_runs(lambda: supervisor.runs, service.clock.time)
        service.metrics.bind_burnins(burnins.snapshot)
        loading = asyncio.get_running_loop().create_task(
            load_burnins(burnins, service), name="burnin-metrics-load")

        stops: list[Callable[[], Awaitable[None]]] = [supervisor.close]
        if slurm_sync_s is not None:
            commands = slurm if slurm is not None else SubprocessSlurm(os.environ)
            sync_loop = SlurmSyncLoop(service, SlurmNodeSync(commands, service.clock,
                                                             interval_s=slurm_sync_s))
            sync_loop.start()
            stops.append(sync_loop.stop)

        async def stop() -> None:
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
            for each in stops:
                await each()

        async def start() -> None:
            live = await supervisor.resume()
            log.info("supervisor: %d stored run(s) loaded, %d re-attached",
                     len(supervisor.runs), live)

        return AdminExtensions(
            runs=SupervisorRpcs(supervisor), stop=stop, start=start,
            burnin_judged=burnins.record_evidence,
            burnin=BurninServicer(service, preflight, rendezvous_host=rendezvous_host,
                                  on_judged=burnins.record_evidence))

    return extend


def drained_nodes(service: FleetService) -> list[str]:
    """Nodes gpufleet holds out of service (a Slurm submission excludes them)."""
    return [n for n, (state, _) in service.state_reasons().items()
            if state in (NodeState.DRAINED, NodeState.REPAIR, NodeState.RETIRED)]


async def load_burnins(latest: LatestBurnins, service: FleetService) -> None:
    """Export the burn-ins stored before this controller started (errors only logged)."""
    try:
        count = await latest.load(service.read, EVIDENCE_KIND)
    except Exception:
        log.exception("could not read the stored burn-ins for the metrics")
    else:
        log.info("burn-in metrics: %d node(s) with a judged burn-in on record", count)
