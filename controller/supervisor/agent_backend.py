"""The supervisor's default launcher backend: ranks started and stopped by the agents
(StartRanks / StopRanks directives); exits and progress come back on the agents' streams.

`RankBackend` is the seam: the Slurm backend (`slurm_backend.py`) fits it too.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Protocol

from controller.server.directives import NotConnected
from controller.server.service import FleetService
from controller.server.streams import DirectiveBacklog
from controller.supervisor.record import RunRecord
from protos.gpufleet.v1 import fleet_pb2


class RankBackend(Protocol):
    """How an attempt's ranks are started, stopped and (where needed) watched."""

    sees_progress: bool  # whether rank progress reaches the supervisor (hang detection)

    async def launch(self, record: RunRecord) -> dict[str, str]:
        """Start the attempt; {node: why not} for every node that could not start."""
        ...

    async def stop(self, record: RunRecord) -> int:
        """Stop every rank of the run; how many nodes confirmed."""
        ...

    async def poll(self, record: RunRecord) -> None:
        """Record exits/failures the backend observes itself (no-op for agents)."""
        ...


class AgentBackend:
    """Ranks as children of each node's agent."""

    sees_progress = True

    def __init__(self, service: FleetService, *, rendezvous_host: str | None, workdir: str,
                 directive_timeout_s: float, port_range: tuple[int, int]) -> None:
        self.service = service
        self.rendezvous_host = rendezvous_host
        self.workdir = workdir
        self.timeout_s = directive_timeout_s
        self.port_range = port_range

    async def launch(self, record: RunRecord) -> dict[str, str]:
        spec = record.spec
        first = record.nodes[0]
        row = await self.service.node(first)
        host = self.rendezvous_host or row.hostname or first
        record.master_addr = host
        record.master_port = pick_port(host, self.port_range, record.master_port)
        sends = []
        for node in record.placement.nodes:
            start = fleet_pb2.StartRanks(
                run_id=spec.name, attempt=record.attempt, argv=list(spec.argv()), env=spec.env,
                master_addr=host, master_port=record.master_port,
                world_size=spec.world_size, workdir=self.workdir,
                ranks=[fleet_pb2.RankAssignment(rank=s.rank, local_rank=s.local_rank,
                                                gpu=s.gpu, rail=s.rail) for s in node.ranks])
            sends.append(self.call(node.node, fleet_pb2.Directive(start_ranks=start)))
        answers = await asyncio.gather(*sends)
        return {n: why for n, why in zip(record.nodes, answers, strict=True) if why is not None}

    async def stop(self, record: RunRecord) -> int:
        def stop() -> fleet_pb2.Directive:  # one message per node: the hub stamps its id on it
            return fleet_pb2.Directive(stop_ranks=fleet_pb2.StopRanks(
                run_id=record.name, attempt=0, grace_s=record.spec.stop_grace_s))

        answers = await asyncio.gather(*(self.call(n, stop()) for n in record.nodes))
        return sum(1 for a in answers if a is None)

    async def poll(self, record: RunRecord) -> None:
        return None  # rank exits and progress arrive on the agents' streams

    async def call(self, node: str, directive: fleet_pb2.Directive) -> str | None:
        """Send and await one directive; None on success, else why not."""
        try:
            outcome = await self.service.call_directive(node, directive, self.timeout_s)
        except (NotConnected, DirectiveBacklog) as exc:
            return str(exc)
        except TimeoutError:
            return f"no answer within {self.timeout_s:g} s"
        return None if outcome.ok else (outcome.message or outcome.answer)


def pick_port(host: str, port_range: tuple[int, int], previous: int) -> int:
    """A rendezvous port for this attempt (free on this host when the host is local)."""
    for _ in range(50):
        port = random.randint(*port_range)
        if port == previous:
            continue
        try:
            with socket.socket() as sock:
                sock.bind((host if host in ("127.0.0.1", "localhost") else "", port))
        except OSError:
            continue
        return port
    return random.randint(*port_range)
