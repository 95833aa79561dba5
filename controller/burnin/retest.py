"""Preflight's burn-in re-test: stale nodes burned in and judged the way `gpufleet burnin` does.

`gpufleet preflight --burnin` re-tests the nodes whose burn-in evidence is stale. They run
through the orchestrator — its single-node pass: the same RunBurnIn directives, timeout,
judgement (SKU floor for NCCL results, cohort median − k·MAD) and stored verdicts as
`gpufleet burnin <nodes>` — with the fleet's recent passing verdicts joining the cohort
(`BurninParams.baseline_age_s`, see `baseline`), so the evidence the gate reads afterwards is a
verdict, not the agent's raw "completed with correct sums".

`ServiceHost` adapts the FleetService to the orchestrator's `BurninHost` (for `gpufleet burnin`
too). The orchestrator is imported as a module, not by its names: it imports controller.server,
whose package imports preflight, which imports this module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from controller.burnin import orchestrator
from controller.burnin.judge import BurnInTarget
from controller.burnin.params import BurninDefaults, BurninParams, params_from_request
from controller.store import FleetStore
from gpufleet_common.clock import Clock
from protos.gpufleet.v1 import fleet_pb2

if TYPE_CHECKING:
    from controller.server.directives import DirectiveOutcome
    from controller.server.service import FleetService

T = TypeVar("T")
SKIPPED = "burnin_skipped"


class ServiceHost:
    """FleetService as the orchestrator's BurninHost (writes go through the service's own
    store writer thread, the only writer of the database)."""

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
        return await self._service.write(fn)

    def connected(self, node: str) -> bool:
        return self._service.connected(node)


def retest_params(nodes: Sequence[str], defaults: BurninDefaults,
                  baseline_age_s: float) -> BurninParams:
    """A single-node burn-in of `nodes` (one rank per GPU) with the defaults, judged with the
    passing verdicts of at most `baseline_age_s` as the cohort's baseline."""
    request = fleet_pb2.BurninRequest(nodes=list(nodes))
    return replace(params_from_request(request, defaults), baseline_age_s=baseline_age_s)


async def burnin_retest(
    host: orchestrator.BurninHost, params: BurninParams, targets: Mapping[str, BurnInTarget],
    on_judged: orchestrator.JudgedSink | None = None,
) -> AsyncIterator[tuple[str, str | None]]:
    """Burn in `params.nodes`, each alone. Yields ("", None) as the burn-in starts, (node, None)
    as a node's burn-in ends and (node, why) for a node that could not be burned in; each
    node's judged verdict is stored (as "burnin" evidence) before the generator ends."""
    async for update in orchestrator.run_burnin(host, params, targets=targets,
                                                on_judged=on_judged):
        if update.WhichOneof("body") == "progress":
            if update.progress.node or not update.progress.done:
                yield update.progress.node, None
            continue
        for result in update.result.nodes:
            if result.check == SKIPPED:
                yield result.node, f"could not be burned in: {result.message}"
