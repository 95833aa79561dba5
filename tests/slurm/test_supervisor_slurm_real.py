"""The supervisor with its Slurm backend, against the real test cluster: a run is submitted
through sbatch, a fatal XID on one of its nodes cancels the job, the spare of the same NVLink
domain takes the failed node's place, and a new submission resumes from the checkpoint."""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import grpc
import pytest

from controller.fleet.lifecycle import NodeState
from controller.server import Controller, PreflightSettings
from controller.slurm.batch import BatchOptions
from controller.slurm.launcher import SlurmLauncher
from controller.supervisor.checkpoints import latest_complete_step
from controller.supervisor.decide import RunState
from controller.supervisor.slurm_backend import SlurmBackend
from controller.supervisor.spec import RunSpec
from controller.supervisor.supervisor import Supervisor, SupervisorSettings
from tests.controller.conftest import RawAgent, report, settings, xid
from tests.slurm.conftest import REPO, SlurmCluster
from tests.slurm.helpers import until

STEPS, EVERY = 300, 50


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_fatal_xid_resubmits_on_the_spare_from_the_checkpoint(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    ckpt = tmp_path / "ckpt"
    spec = RunSpec(
        name="dsv3-slurm", world_size=2, ranks_per_node=1, ep_size=2,
        command=(sys.executable, "-m", "examples.deepseek_v3_mini.train", "--steps", "{steps}",
                 "--ckpt-dir", "{checkpoint_dir}", "--ckpt-every", "{checkpoint_interval}",
                 "--device", "cpu", "--ep-size", "{ep_size}", "--pg-timeout-s", "30"),
        checkpoint_dir=str(ckpt), steps=STEPS, checkpoint_interval=EVERY,
        spares_per_domain=1, restart_budget=2, env={"OMP_NUM_THREADS": "1"})
    controller = Controller(settings(tmp_path / "fleet.db"))
    await controller.start()
    service = controller.service
    assert service is not None
    launcher = SlurmLauncher(slurm.commands(), BatchOptions(
        workdir=REPO, log_dir=tmp_path / "logs", port_base=random.randrange(20000, 40000)))
    backend = SlurmBackend(
        launcher, lambda: [n for n in slurm.nodes
                           if service.state_of(n) is NodeState.DRAINED], time.time)
    supervisor = Supervisor(service, PreflightSettings(), SupervisorSettings(), backend=backend)
    channel = grpc.aio.insecure_channel(controller.address)
    try:
        agents = {}
        for node in slurm.nodes:  # node1..node3, one NVLink domain
            agent = RawAgent(channel)
            await agent.hello(node, gpus=1)
            await agent.send(report(1, gpus=1))
            await agent.until_ack(1)
            agents[node] = agent
        record = await supervisor.start_run(spec)
        assert record.nodes == ("node1", "node2")
        assert dict(record.placement.spares) == {"dom-a": ("node3",)}

        await until(lambda: (latest_complete_step(ckpt) or 0) >= EVERY, 60, "a checkpoint")
        await agents["node2"].send(xid(2, code=79, gpu=0))
        await until(lambda: record.state in (RunState.COMPLETED, RunState.FAILED), 120,
                     "the run to end")
        assert record.state is RunState.COMPLETED, record.reason
        assert record.restarts == 1 and record.nodes == ("node1", "node3")
        kinds = [e.kind for e in record.events]
        assert kinds.count("submitted") == 2 and "replace" in kinds
        failure = next(e for e in record.events if e.kind == "failure")
        assert "node2" in failure.message and "79" in failure.message
        logs = sorted((tmp_path / "logs").glob("*.err"))
        starts = [json.loads(line) for f in logs for line in f.read_text().splitlines()
                  if line.startswith('{"event": "start"')]
        resumed = [s["resumed_from"] for s in starts if s["resumed_from"] is not None]
        assert resumed and min(resumed) >= EVERY  # attempt 2 picked up the checkpoint
        assert latest_complete_step(ckpt) == STEPS
    finally:
        await supervisor.close()
        await channel.close()
        await controller.stop(grace_s=0)
