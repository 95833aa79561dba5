"""`gpufleet-controller serve --slurm-sync`: a node the controller drains on a fatal XID shows up
drained in a real Slurm with gpufleet's reason, and an operator's drain is left alone."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from controller.extensions import build_extensions
from controller.server import Controller, PreflightSettings
from tests.controller.conftest import RawAgent, settings, xid
from tests.slurm.conftest import SlurmCluster
from tests.slurm.helpers import until


@pytest.mark.slow
async def test_fatal_xid_drains_the_slurm_node_with_gpufleets_reason(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    victim, bystander = slurm.nodes[0], slurm.nodes[1]
    slurm.run("scontrol", "update", f"NodeName={bystander}", "State=DRAIN",
              "Reason=operator: fan swap")
    extend = build_extensions(PreflightSettings(), slurm_sync_s=30.0, slurm=slurm.commands())
    controller = Controller(settings(tmp_path / "fleet.db"), extend=extend)
    await controller.start()
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        agents = []
        for node in (victim, bystander):
            agent = RawAgent(channel)
            await agent.hello(node)
            agents.append(agent)
        await agents[0].send(xid(1, code=79, gpu=2))
        await agents[0].until_ack(1)

        def drained_by_gpufleet() -> bool:
            out = slurm.run("sinfo", "-N", "-h", "-o", "%N|%T|%E").stdout
            return any(line.startswith(f"{victim}|") and "drain" in line
                       and "gpufleet:" in line for line in out.splitlines())

        await until(drained_by_gpufleet, 20, f"{victim} drained in Slurm")
        reasons = slurm.run("sinfo", "-R", "-h", "-o", "%N|%E").stdout
        assert f"{victim}|gpufleet: xid 79" in reasons
        assert f"{bystander}|operator: fan swap" in reasons  # never overwritten or resumed
        for agent in agents:
            await agent.close()
    finally:
        await channel.close()
        await controller.stop(grace_s=0)
