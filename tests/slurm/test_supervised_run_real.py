"""THE RUN: a supervised DeepSeek-V3-mini run under real Slurm survives a node fault.

Attempt 1 runs on node1+node2 (node3 is the spare); its rank on node2 dies at step 7. The
supervisor's pieces, as a supervisor loop would use them: the launcher's job state shows the
failure and srun's task report names node2; gpufleet judges node2 fatal (XID 79), `decide`
replaces it with the spare, the node sync drains it in Slurm, and attempt 2 goes to
node1+node3 with node2 excluded. The training resumes from the latest complete checkpoint
(step 4) and finishes; its steps 5 and 6 repeat attempt 1's losses (same state, same data).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.fleet.lifecycle import NodeState
from controller.slurm.batch import BatchOptions
from controller.slurm.launcher import SlurmLauncher
from controller.slurm.model import JobPhase
from controller.slurm.reconcile import Drain, FleetNodeView
from controller.slurm.sync import SlurmNodeSync
from controller.supervisor.decide import Failure, FailureKind, Restart, RunView, decide
from controller.supervisor.placement import Candidate, Layout, Placement, place, replace_node
from controller.supervisor.spec import RunSpec
from examples.deepseek_v3_mini.checkpoint import latest_complete_checkpoint
from gpufleet_common.clock import SystemClock
from tests.slurm.conftest import REPO, SlurmCluster
from tests.slurm.helpers import READY

STEPS, CKPT_EVERY, FAIL_AT, FAIL_RANK = 10, 4, 7, 1


def _spec(ckpt_dir: Path) -> RunSpec:
    command = (sys.executable, "-m", "examples.deepseek_v3_mini.train", "--steps", "{steps}",
               "--ckpt-dir", "{checkpoint_dir}", "--ckpt-every", "{checkpoint_interval}",
               "--device", "cpu", "--ep-size", "{ep_size}", "--seq-len", "16",
               "--pg-timeout-s", "30", "--fail-at-step", str(FAIL_AT),
               "--fail-rank", str(FAIL_RANK))
    return RunSpec(name="dsv3-mini", command=command, ranks_per_node=1, world_size=2,
                   ep_size=2, checkpoint_dir=str(ckpt_dir), steps=STEPS,
                   checkpoint_interval=CKPT_EVERY, spares_per_domain=1, restart_budget=2,
                   env={"OMP_NUM_THREADS": "1"})


def _steps(stdout: Path) -> dict[int, float]:
    lines = [json.loads(x) for x in stdout.read_text().splitlines() if x.startswith("{")]
    return {int(x["step"]): float(x["loss"]) for x in lines if "step" in x}


def _events(stderr: Path, name: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.read_text(errors="replace").splitlines():
        if line.startswith("{") and json.loads(line).get("event") == name:
            out.append(json.loads(line))
    return out


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_e_supervised_run_survives_a_node_fault_on_the_spare(slurm: SlurmCluster,
                                                             tmp_path: Path) -> None:
    clock = SystemClock()
    commands = slurm.commands()
    spec = _spec(tmp_path / "ckpt")
    options = BatchOptions(workdir=REPO, log_dir=tmp_path / "logs",
                           port_base=random.randrange(20000, 40000), port_span=1000)
    launcher = SlurmLauncher(commands, options)
    sync = SlurmNodeSync(commands, clock)
    fleet = dict.fromkeys(slurm.nodes, READY)
    assert sync.sync(fleet).applied == ()

    placement = place([Candidate(n, "nvl0", gpus=1) for n in slurm.nodes],
                      Layout(spec.world_size, spec.ranks_per_node, spec.ep_size, 1))
    assert isinstance(placement, Placement)
    assert placement.node_names == ("node1", "node2") and placement.spares == {"nvl0": ("node3",)}

    # Attempt 1: rank 1 (node2) dies at step 7.
    job1 = launcher.submit(spec, placement, attempt=1, exclude=())
    state1 = launcher.wait(job1, clock, timeout_s=60)
    assert state1.phase is JobPhase.FAILED and state1.exit_code != 0, state1
    assert state1.nodes == ("node1", "node2")
    first = launcher.task_exits(job1)[0]
    assert (first.node, first.exit_code) == ("node2", 17)
    sub1 = launcher.submission(job1)
    assert sorted(_steps(sub1.stdout)) == list(range(1, FAIL_AT))
    ckpt = latest_complete_checkpoint(spec.checkpoint_dir)
    assert ckpt is not None and ckpt[0] == CKPT_EVERY

    # gpufleet finds node2 fatal; the supervisor decides to replace it with the spare.
    fleet["node2"] = FleetNodeView(NodeState.DRAINED, "fatal_event: XID 79 on gpu 0", 7901)
    failures = [Failure(FailureKind.NODE_FATAL, "node2", clock.time(), "XID 79",
                        evidence_id="7901"),
                Failure(FailureKind.RANK_EXIT, first.node, clock.time() + 0.1,
                        first.detail, rank=FAIL_RANK)]
    decision = decide(RunView(attempt=1, restarts_used=0, restart_budget=spec.restart_budget,
                              world_size=spec.world_size, nodes=placement.node_names,
                              domain_of=dict.fromkeys(slurm.nodes, "nvl0"),
                              spares=placement.spares, failures=failures))
    assert isinstance(decision, Restart) and dict(decision.replace) == {"node2": "node3"}
    report = sync.sync(fleet)
    assert [a.node for a in report.applied if isinstance(a, Drain)] == ["node2"]
    drained = sorted(n.name for n in commands.nodes() if n.drained)
    assert drained == ["node2"]

    # Attempt 2 on the spare, node2 kept out, from the step-4 checkpoint.
    placement2 = replace_node(placement, "node2", "node3")
    job2 = launcher.submit(spec, placement2, attempt=2, exclude=drained)
    state2 = launcher.wait(job2, clock, timeout_s=60)
    sub2 = launcher.submission(job2)
    assert state2.phase is JobPhase.COMPLETED and state2.exit_code == 0, (
        state2, sub2.stderr.read_text()[-2000:])
    assert state2.nodes == ("node1", "node3")
    assert [e["resumed_from"] for e in _events(sub2.stderr, "start")] == [CKPT_EVERY] * 2
    steps1, steps2 = _steps(sub1.stdout), _steps(sub2.stdout)
    assert sorted(steps2) == list(range(CKPT_EVERY + 1, STEPS + 1))
    for step in range(CKPT_EVERY + 1, FAIL_AT):  # replayed from the same state and data
        assert steps2[step] == pytest.approx(steps1[step], rel=1e-5)
    final = latest_complete_checkpoint(spec.checkpoint_dir)
    assert final is not None and final[0] == STEPS - STEPS % CKPT_EVERY
