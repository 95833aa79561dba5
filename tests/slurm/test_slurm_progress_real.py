"""Rank progress under the Slurm launcher, against the real test cluster: each attempt is an sbatch
job whose ranks report to their node's agent (a real `gpufleet-agent run` per Slurm node, each
with its own standing progress socket), and the agents forward the steps to the controller.

So `gpufleet run status` shows a Slurm run's steps and goodput, and a hung rank is found within
the run's hang timeout and its job cancelled, instead of living until Slurm's time limit.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from controller.extensions import drained_nodes
from controller.server import Controller, PreflightSettings
from controller.server.admin import AdminExtensions
from controller.server.run_admin import SupervisorRpcs
from controller.server.service import FleetService
from controller.slurm.batch import BatchOptions
from controller.slurm.launcher import SlurmLauncher
from controller.slurm.model import JobPhase
from controller.supervisor.decide import RunState
from controller.supervisor.record import RunRecord
from controller.supervisor.slurm_backend import SlurmBackend
from controller.supervisor.spec import RunSpec
from controller.supervisor.supervisor import Supervisor, SupervisorSettings
from tests.controller.conftest import settings
from tests.slurm.conftest import REPO, SlurmCluster
from tests.slurm.helpers import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
HANG_TIMEOUT_S = 5.0


@dataclass
class Fleet:
    """A controller whose supervisor launches through Slurm, and one agent per Slurm node."""

    controller: Controller
    supervisor: Supervisor
    launcher: SlurmLauncher
    sockets: Path

    def gpufleet(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The operator CLI against this controller."""
        return subprocess.run(
            [str(Path(sys.executable).parent / "gpufleet"), "--controller",
             self.controller.address, *args],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False)


def _spec(tmp: Path, name: str, steps: int, *extra: str, budget: int = 1) -> RunSpec:
    return RunSpec(
        name=name, world_size=2, ranks_per_node=1, ep_size=2, checkpoint_dir=str(tmp / name),
        command=(sys.executable, "-m", "examples.deepseek_v3_mini.train", "--steps", "{steps}",
                 "--ckpt-dir", "{checkpoint_dir}", "--ckpt-every", "{checkpoint_interval}",
                 "--device", "cpu", "--ep-size", "{ep_size}", "--seq-len", "16",
                 "--pg-timeout-s", "60", *extra),
        steps=steps, checkpoint_interval=10, spares_per_domain=1, restart_budget=budget,
        hang_timeout_s=HANG_TIMEOUT_S, startup_timeout_s=120.0, env={"OMP_NUM_THREADS": "1"})


def _agent(node: str, address: str, sockets: Path) -> subprocess.Popen[bytes]:
    """A real agent for Slurm node `node` (all three share one simulated NVLink domain)."""
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--controller", address, "--insecure",
         "--simulate", "gb300:nodes=1", "--node", node, "--metrics-listen", "127.0.0.1:0",
         "--interval", "2", "--state-dir", str(sockets / f"{node}-state"),
         "--progress-socket", str(sockets / f"{node}.sock")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=(sockets / f"{node}.log").open("wb"),
        start_new_session=True)


@asynccontextmanager
async def slurm_fleet(slurm: SlurmCluster, tmp_path: Path) -> AsyncIterator[Fleet]:
    sockets = Path(tempfile.mkdtemp(prefix="gfsl-"))  # unix socket paths have 107 bytes
    launcher = SlurmLauncher(slurm.commands(), BatchOptions(
        workdir=REPO, log_dir=tmp_path / "logs", port_base=random.randrange(20000, 40000),
        progress_socket=f"{sockets}/{{node}}.sock"))
    made: list[Supervisor] = []

    def extend(service: FleetService) -> AdminExtensions:
        backend = SlurmBackend(launcher, lambda: drained_nodes(service), service.clock.time)
        made.append(Supervisor(service, PreflightSettings(), SupervisorSettings(),
                               backend=backend))
        return AdminExtensions(runs=SupervisorRpcs(made[0]), stop=made[0].close)

    controller = Controller(settings(tmp_path / "fleet.db"), extend=extend)
    await controller.start()
    service = controller.service
    assert service is not None
    agents = [_agent(node, controller.address, sockets) for node in slurm.nodes]
    try:
        await until(lambda: all(service.connected(n) for n in slurm.nodes), 60,
                    "every agent to connect")
        yield Fleet(controller, made[0], launcher, sockets)
    finally:
        for agent in agents:
            agent.send_signal(signal.SIGTERM)
        for agent in agents:
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait(5)
        await controller.stop(grace_s=0)
        shutil.rmtree(sockets, ignore_errors=True)


def _job_of(record: RunRecord) -> str:
    """The Slurm job id of the record's current attempt, from its timeline."""
    for event in reversed(record.events):
        match = re.search(r"is Slurm job (\d+)", event.message)
        if event.kind == "submitted" and match:
            return match.group(1)
    raise AssertionError(f"no submission in {record.events}")


async def _status(fleet: Fleet, name: str) -> dict[str, Any]:
    done = await asyncio.to_thread(fleet.gpufleet, "run", "status", name, "--json")
    assert done.returncode == 0, done.stderr
    detail: dict[str, Any] = json.loads(done.stdout)
    return detail


def _ended(record: RunRecord) -> Callable[[], bool]:
    return lambda: record.state in (RunState.COMPLETED, RunState.FAILED, RunState.STOPPED)


async def test_run_status_shows_the_steps_and_goodput_of_a_slurm_run(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    async with slurm_fleet(slurm, tmp_path) as fleet:
        steps = 40
        record = await fleet.supervisor.start_run(
            _spec(tmp_path, "slurm-steps", steps, "--min-step-s", "0.2"))
        await until(lambda: record.step > 0, 90, "the first step to reach the controller")
        running = await _status(fleet, "slurm-steps")
        assert running["run"]["state"] in ("running", "completed")
        assert int(running["run"]["step"]) > 0 and running["run"]["loss"] > 0
        await until(_ended(record), 150, "the run to end")
        assert record.state is RunState.COMPLETED, record.reason
        detail = await _status(fleet, "slurm-steps")
    run, goodput = detail["run"], detail["goodput"]
    assert run["state"] == "completed" and int(run["step"]) == steps
    assert int(goodput["productive_steps"]) == steps and 0 < goodput["goodput"] <= 1
    assert goodput["productive_s"] > 0
    kinds = [e["kind"] for e in detail["events"]]
    assert "submitted" in kinds and "step" in kinds  # the first step came through an agent


async def test_a_hung_rank_under_slurm_is_found_within_the_hang_timeout_and_cancelled(
    slurm: SlurmCluster, tmp_path: Path
) -> None:
    async with slurm_fleet(slurm, tmp_path) as fleet:
        spec = _spec(tmp_path, "slurm-hang", 200, "--hang-at-step", "6", "--fail-rank", "1",
                     budget=0)
        record = await fleet.supervisor.start_run(spec)
        job = _job_of(record)
        await until(_ended(record), 150, "the hang to end the run")
        detail = await _status(fleet, "slurm-hang")
        state = await asyncio.to_thread(fleet.launcher.job_state, job)
        await until(lambda: fleet.launcher.job_state(job).terminal, 30, "the job to end")
    assert record.state is RunState.FAILED
    reason = detail["run"]["reason"]
    assert "rank_hang" in reason and "no step for " in reason, reason
    silent = float(reason.split("no step for ")[1].split(" s")[0])
    # noticed soon after the hang timeout (the reason rounds to 0.1 s)
    assert HANG_TIMEOUT_S <= silent < HANG_TIMEOUT_S + 5.0  # soon after it (2 loaded cores)
    assert int(detail["run"]["step"]) == 5  # steps 1..5 were reported, the hang is at 6
    assert state.phase in (JobPhase.RUNNING, JobPhase.CANCELLED), state  # we cancelled it
    assert fleet.launcher.job_state(job).phase is JobPhase.CANCELLED
