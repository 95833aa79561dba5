"""FleetAdmin: the operator API (list, inspect, drain/undrain, events, preflight)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

import grpc

from controller.burnin.outcome import result_from_evidence
from controller.fleet.lifecycle import IllegalTransition, NodeState
from controller.store import FleetStore, NodeRow
from controller.store.codec import dict_to_finding, dict_to_gpu_info, dict_to_rail
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc

from .preflight import PreflightSettings, run_preflight
from .security import AdminAuth, AuthError
from .service import FleetService, UnknownNode
from .validate import WireError, check_node_name

if TYPE_CHECKING:  # a cycle at run time: orchestrator → controller.server → here
    from controller.burnin.orchestrator import JudgedSink

Context = grpc.aio.ServicerContext[Any, Any]
MAX_REASON = 1024
MAX_EVENTS = 10_000
MAX_HISTORY = 1_000
MAX_PREFLIGHT_NODES = 100_000


class RunRpcs(Protocol):
    """The run RPCs, served by the run supervisor (called after authentication)."""

    async def StartRun(self, request: fleet_pb2.StartRunRequest,
                       context: Context) -> fleet_pb2.RunDetail: ...

    async def GetRun(self, request: fleet_pb2.RunRequest,
                     context: Context) -> fleet_pb2.RunDetail: ...

    async def ListRuns(self, request: fleet_pb2.ListRunsRequest,
                       context: Context) -> fleet_pb2.ListRunsResponse: ...

    async def StopRun(self, request: fleet_pb2.RunRequest,
                      context: Context) -> fleet_pb2.RunDetail: ...


class BurninRpcs(Protocol):
    """The burn-in RPC, served by the burn-in orchestration (called after authentication)."""

    def Burnin(self, request: fleet_pb2.BurninRequest,
               context: Context) -> AsyncIterator[fleet_pb2.BurninUpdate]: ...


@dataclass
class AdminExtensions:
    """FleetAdmin RPCs that other parts of the controller serve; None = UNIMPLEMENTED."""

    runs: RunRpcs | None = None
    burnin: BurninRpcs | None = None
    stop: Callable[[], Awaitable[None]] | None = None  # called when the controller stops
    start: Callable[[], Awaitable[None]] | None = None  # called before the server serves
    burnin_judged: JudgedSink | None = None  # told of burn-in verdicts preflight stores


class FleetAdminServicer(fleet_pb2_grpc.FleetAdminServicer):
    """Serves FleetAdmin from a FleetService; every call is authenticated first."""

    def __init__(self, service: FleetService, auth: AdminAuth,
                 preflight: PreflightSettings | None = None,
                 extensions: AdminExtensions | None = None) -> None:
        self._service = service
        self._auth = auth
        self._preflight = preflight or PreflightSettings()
        self._ext = extensions or AdminExtensions()

    async def _actor(self, context: Context) -> str:
        try:
            return self._auth.authenticate(context.invocation_metadata(), context.auth_context())
        except AuthError as err:
            await context.abort(err.code, err.message)

    @staticmethod
    async def _fail(context: Context, err: Exception) -> NoReturn:
        if isinstance(err, UnknownNode):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no node named {err.args[0]!r}")
        if isinstance(err, IllegalTransition):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        if isinstance(err, WireError):
            await context.abort(err.code, err.message)
        raise err

    def view(self, row: NodeRow) -> fleet_pb2.NodeView:
        """A stored node as the wire's NodeView."""
        return fleet_pb2.NodeView(
            name=row.name, state=row.state, verdict=row.verdict, sku=row.sku,
            gpus=len(row.gpus), nvlink_domain=row.nvlink_domain, rack=row.rack,
            connected=self._service.connected(row.name), last_seen=row.last_seen,
            state_reason=row.state_reason, driver_version=row.driver_version,
            hostname=row.hostname,
        )

    async def ListNodes(
        self, request: fleet_pb2.ListNodesRequest, context: Context
    ) -> fleet_pb2.ListNodesResponse:
        await self._actor(context)
        if request.state and request.state not in NodeState.__members__.values():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"unknown state {request.state[:40]!r}; expected one of "
                                f"{', '.join(s.value for s in NodeState)}")
        rows = await self._service.read(lambda store: store.nodes(
            state=request.state, sku=request.sku, nvlink_domain=request.nvlink_domain))
        return fleet_pb2.ListNodesResponse(nodes=[self.view(r) for r in rows])

    async def GetNode(
        self, request: fleet_pb2.GetNodeRequest, context: Context
    ) -> fleet_pb2.NodeDetail:
        await self._actor(context)
        limit = request.history_limit or 50
        try:
            check_node_name(request.name)
            if not 0 < limit <= MAX_HISTORY:
                raise WireError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"history_limit must be 1..{MAX_HISTORY}")
            row = await self._service.node(request.name)
        except (WireError, UnknownNode) as err:
            await self._fail(context, err)

        def details(store: FleetStore) -> tuple[Any, Any, Any]:
            evidence = (store.evidence(row.health_evidence_id)
                        if row.health_evidence_id is not None else None)
            return (evidence, store.transitions(row.name, limit),
                    store.latest_evidence(row.name, "burnin"))

        evidence, history, burnin = await self._service.read(details)
        detail = fleet_pb2.NodeDetail(node=self.view(row))
        if evidence is not None:
            detail.findings.extend(dict_to_finding(f) for f in evidence.detail.get("findings", []))
            detail.findings_at = evidence.taken_at
        for t in history:
            detail.history.add(node=t.node, from_state=t.from_state, to_state=t.to_state,
                               cause=t.cause, at=t.at, actor=t.actor,
                               evidence_id="" if t.evidence_id is None else str(t.evidence_id))
        detail.gpus.extend(dict_to_gpu_info(g) for g in row.gpus)
        detail.rails.extend(dict_to_rail(r) for r in row.rails)
        if burnin is not None:
            detail.burnin.CopyFrom(result_from_evidence(burnin.id, burnin.verdict, burnin.detail))
            detail.burnin.node = row.name
            detail.burnin_at = burnin.taken_at
        return detail

    async def _drain(self, request: fleet_pb2.DrainRequest, context: Context,
                     drain: bool) -> fleet_pb2.NodeView:
        actor = await self._actor(context)
        try:
            check_node_name(request.node)
            if len(request.reason) > MAX_REASON:
                raise WireError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"reason is longer than {MAX_REASON} characters")
            reason = request.reason or "no reason given"
            if drain:
                await self._service.drain(request.node, reason, actor)
            else:
                await self._service.undrain(request.node, reason, actor)
            row = await self._service.node(request.node)
        except (WireError, UnknownNode, IllegalTransition) as err:
            await self._fail(context, err)
        return self.view(row)

    async def Drain(
        self, request: fleet_pb2.DrainRequest, context: Context
    ) -> fleet_pb2.NodeView:
        return await self._drain(request, context, drain=True)

    async def Undrain(
        self, request: fleet_pb2.DrainRequest, context: Context
    ) -> fleet_pb2.NodeView:
        return await self._drain(request, context, drain=False)

    async def ListEvents(
        self, request: fleet_pb2.ListEventsRequest, context: Context
    ) -> fleet_pb2.ListEventsResponse:
        await self._actor(context)
        limit = request.limit or 100
        if not 0 < limit <= MAX_EVENTS:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"limit must be 1..{MAX_EVENTS}")
        if request.node:
            try:
                check_node_name(request.node)
            except WireError as err:
                await self._fail(context, err)
        rows = await self._service.read(
            lambda store: store.events(node=request.node, since=request.since, limit=limit))
        return fleet_pb2.ListEventsResponse(events=[
            fleet_pb2.FleetEvent(id=e.id, node=e.node, kind=e.kind, message=e.message, at=e.at,
                                 detail={k: str(v) for k, v in e.detail.items()})
            for e in rows
        ])

    async def Preflight(
        self, request: fleet_pb2.PreflightRequest, context: Context
    ) -> AsyncIterator[fleet_pb2.PreflightUpdate]:
        await self._actor(context)
        if not request.all and not request.nodes:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "name the nodes to gate, or set all")
        if len(request.nodes) > MAX_PREFLIGHT_NODES:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "too many nodes")
        try:
            for name in request.nodes:
                check_node_name(name)
        except WireError as err:
            await self._fail(context, err)
        if request.max_age_s < 0 or request.timeout_s < 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                "max_age_s and timeout_s must be >= 0")
        async for update in run_preflight(self._service, request, self._preflight,
                                          on_judged=self._ext.burnin_judged):
            yield update

    # ---------------------------------------------------------------- served by extensions

    async def _runs(self, context: Context) -> RunRpcs:
        await self._actor(context)
        if self._ext.runs is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                "this controller has no run supervisor")
        return self._ext.runs

    async def StartRun(
        self, request: fleet_pb2.StartRunRequest, context: Context
    ) -> fleet_pb2.RunDetail:
        return await (await self._runs(context)).StartRun(request, context)

    async def GetRun(
        self, request: fleet_pb2.RunRequest, context: Context
    ) -> fleet_pb2.RunDetail:
        return await (await self._runs(context)).GetRun(request, context)

    async def ListRuns(
        self, request: fleet_pb2.ListRunsRequest, context: Context
    ) -> fleet_pb2.ListRunsResponse:
        return await (await self._runs(context)).ListRuns(request, context)

    async def StopRun(
        self, request: fleet_pb2.RunRequest, context: Context
    ) -> fleet_pb2.RunDetail:
        return await (await self._runs(context)).StopRun(request, context)

    async def Burnin(
        self, request: fleet_pb2.BurninRequest, context: Context
    ) -> AsyncIterator[fleet_pb2.BurninUpdate]:
        await self._actor(context)
        if self._ext.burnin is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                                "this controller has no burn-in orchestration")
        async for update in self._ext.burnin.Burnin(request, context):
            yield update
