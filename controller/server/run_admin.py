"""The run RPCs of FleetAdmin (StartRun, GetRun, ListRuns, StopRun) over the Supervisor: the
`RunRpcs` extension the admin servicer calls, and the RunRecord → wire conversions."""

from __future__ import annotations

import tomllib
from typing import Any

import grpc

from controller.supervisor.record import RunRecord
from controller.supervisor.spec import RunSpecError, run_spec_from_dict
from controller.supervisor.supervisor import RunRejected, Supervisor
from protos.gpufleet.v1 import fleet_pb2

Context = grpc.aio.ServicerContext[Any, Any]
MAX_SPEC_BYTES = 1 << 20
MAX_EVENTS_SENT = 500


def run_view(r: RunRecord) -> fleet_pb2.RunView:
    return fleet_pb2.RunView(
        name=r.name, state=r.state.value, attempt=r.attempt, restarts=r.restarts,
        restart_budget=r.spec.restart_budget, step=r.step, target_steps=r.spec.steps,
        loss=r.loss, step_time_s=r.step_time_s, started_at=r.created_at, ended_at=r.ended_at,
        nodes=list(r.nodes), reason=r.reason, world_size=r.spec.world_size)


def run_detail(r: RunRecord, now: float) -> fleet_pb2.RunDetail:
    ledger = r.ledger(now)
    goodput = fleet_pb2.Goodput(
        wall_s=ledger.wall_s, productive_s=ledger.productive_s, recomputed_s=ledger.recomputed_s,
        detection_s=ledger.detection_s, restart_s=ledger.restart_s, other_s=ledger.other_s,
        productive_steps=ledger.productive_steps, recomputed_steps=ledger.recomputed_steps,
        restarts=ledger.restarts, goodput=ledger.goodput)
    for key in ("energy_j", "productive_energy_j", "joules_per_step", "joules_per_token"):
        value = getattr(ledger, key)
        if value is not None:
            setattr(goodput, key, value)
    return fleet_pb2.RunDetail(
        run=run_view(r), goodput=goodput,
        events=[fleet_pb2.RunEvent(at=e.at, kind=e.kind, node=e.node, attempt=e.attempt,
                                   message=e.message) for e in r.events[-MAX_EVENTS_SENT:]],
        placement=[fleet_pb2.RunPlacementNode(node=n.node, domain=n.domain, ep_group=n.ep_group,
                                              ranks=[s.rank for s in n.ranks])
                   for n in r.placement.nodes],
        spares={d: ",".join(s) for d, s in r.placement.spares.items()})


class SupervisorRpcs:
    """StartRun / GetRun / ListRuns / StopRun over a Supervisor (the admin servicer has
    authenticated the caller already)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def _now(self) -> float:
        return self.supervisor.service.clock.time()

    async def StartRun(self, request: fleet_pb2.StartRunRequest,
                       context: Context) -> fleet_pb2.RunDetail:
        source = request.source or "run spec"
        if len(request.spec_toml.encode()) > MAX_SPEC_BYTES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{source}: spec is too large")
        try:
            spec = run_spec_from_dict(tomllib.loads(request.spec_toml), source)
        except tomllib.TOMLDecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{source}: {exc}")
        except RunSpecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            record = await self.supervisor.start_run(spec)
        except RunRejected as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"run {spec.name!r} cannot start: " + "; ".join(exc.reasons))
        return run_detail(record, self._now())

    async def GetRun(self, request: fleet_pb2.RunRequest,
                     context: Context) -> fleet_pb2.RunDetail:
        record = self.supervisor.runs.get(request.name)
        if record is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run named {request.name!r}")
        return run_detail(record, self._now())

    async def ListRuns(self, request: fleet_pb2.ListRunsRequest,
                       context: Context) -> fleet_pb2.ListRunsResponse:
        return fleet_pb2.ListRunsResponse(runs=[run_view(r) for r in self.supervisor.runs.values()])

    async def StopRun(self, request: fleet_pb2.RunRequest,
                      context: Context) -> fleet_pb2.RunDetail:
        if request.name not in self.supervisor.runs:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no run named {request.name!r}")
        record = await self.supervisor.stop_run(request.name)
        return run_detail(record, self._now())
