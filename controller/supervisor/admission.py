"""Which nodes a run may use: the preflight gate's verdicts (re-testing only stale evidence),
the fleet's rows as placement candidates, and the spares that can step in right now."""

from __future__ import annotations

from collections.abc import Sequence

from controller.fleet.lifecycle import NodeState
from controller.server.preflight import PreflightSettings, run_preflight
from controller.server.service import FleetService
from controller.store import NodeRow
from controller.store.codec import rails_by_gpu
from controller.supervisor.placement import Candidate, Placement
from protos.gpufleet.v1 import fleet_pb2

SPARE_STATES = frozenset({NodeState.READY, NodeState.REGISTERED})


class Admission:
    """Asks the gate about nodes for the supervisor."""

    def __init__(self, service: FleetService, preflight: PreflightSettings) -> None:
        self.service = service
        self.preflight = preflight

    async def admit(self, nodes: Sequence[str] | None, run: str) -> list[str]:
        """Nodes the preflight gate admits (None: every node), re-testing stale evidence."""
        request = fleet_pb2.PreflightRequest(all=nodes is None, nodes=list(nodes or ()), run=run)
        admitted: list[str] = []
        async for update in run_preflight(self.service, request, self.preflight):
            if update.WhichOneof("body") == "result":
                admitted = [v.node for v in update.result.verdicts if v.admitted]
        return admitted

    async def usable_spares(self, placement: Placement) -> dict[str, tuple[str, ...]]:
        """Per domain, the spares that are connected, in service and admitted, in order."""
        out: dict[str, tuple[str, ...]] = {}
        for domain, names in placement.spares.items():
            usable = [n for n in names if self.service.connected(n)
                      and self.service.state_of(n) in SPARE_STATES]
            admitted = await self.admit(usable, "") if usable else []
            out[domain] = tuple(n for n in usable if n in admitted)
        return out

    async def rows(self) -> dict[str, NodeRow]:
        """Every node the fleet knows, by name."""
        rows = await self.service.read(lambda store: store.nodes())
        return {row.name: row for row in rows}


def candidate(row: NodeRow) -> Candidate:
    """A node as placement sees it (its NVLink domain, GPU count and NIC rails)."""
    rails = {gpu: rail for gpu, rail in enumerate(rails_by_gpu(row.rails)) if rail}
    return Candidate(row.name, row.nvlink_domain or row.name, len(row.gpus), rails)
