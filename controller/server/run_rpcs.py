"""The run RPCs as the admin servicer's `RunRpcs` extension, over a Supervisor."""

from __future__ import annotations

from controller.server import run_admin
from controller.server.run_admin import Context
from controller.supervisor.supervisor import Supervisor
from protos.gpufleet.v1 import fleet_pb2


class SupervisorRpcs:
    """StartRun / GetRun / ListRuns / StopRun (authentication is done by the caller)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    async def StartRun(self, request: fleet_pb2.StartRunRequest,
                       context: Context) -> fleet_pb2.RunDetail:
        return await run_admin.start_run(self.supervisor, request, context)

    async def GetRun(self, request: fleet_pb2.RunRequest,
                     context: Context) -> fleet_pb2.RunDetail:
        return await run_admin.get_run(self.supervisor, request, context)

    async def ListRuns(self, request: fleet_pb2.ListRunsRequest,
                       context: Context) -> fleet_pb2.ListRunsResponse:
        return await run_admin.list_runs(self.supervisor)

    async def StopRun(self, request: fleet_pb2.RunRequest,
                      context: Context) -> fleet_pb2.RunDetail:
        return await run_admin.stop_run(self.supervisor, request, context)
