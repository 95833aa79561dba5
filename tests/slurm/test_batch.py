"""The attempt's sbatch script (pure builder), run through real bash with a stand-in srun, and
the launcher over FakeSlurm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.slurm.batch import EXIT_NOT_IN_PLACEMENT, BatchOptions, batch_script, job_name
from controller.slurm.fake import FakeSlurm
from controller.slurm.launcher import SlurmLauncher, TaskExit
from controller.slurm.model import JobPhase, SlurmNode
from controller.supervisor.placement import Candidate, Layout, Placement, place, replace_node
from controller.supervisor.spec import RunSpec
from gpufleet_common.clock import FakeClock
from tests.slurm.conftest import REPO

# Braces doubled: the spec's command is a format string.
SHOW_ENV = ("import json, os, sys; print(json.dumps({{k: os.environ.get(k) for k in ("
            "'RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'GPUFLEET_NODE', "
            "'TORCH_DISABLE_SHARE_RDZV_TCP_STORE', 'WEIRD', 'GPUFLEET_ATTEMPT')}} | "
            "{{'argv': sys.argv[1:]}}))")

# Stands in for srun: starts every task of the step one after another, with the variables
# Slurm gives a task, nodes in Slurm's (sorted) order.
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
for node in $FAKE_NODES; do
  for ((l = 0; l < FAKE_RPN; l++)); do
    SLURMD_NODENAME=$node SLURM_LOCALID=$l SLURM_NTASKS=$FAKE_NTASKS "$@" || exit $?
  done
done
"""


def _spec(tmp_path: Path, command: tuple[str, ...] = ("python", "-m", "train"),
          **kw: object) -> RunSpec:
    fields: dict[str, object] = dict(
        name="dsv3 mini/x", command=command, ranks_per_node=2, world_size=4, ep_size=2,
        checkpoint_dir=str(tmp_path / "ck"), steps=20, checkpoint_interval=5,
        spares_per_domain=1, env={"WEIRD": "it's a $HOME `x` \"q\""})
    fields.update(kw)
    return RunSpec(**fields)  # type: ignore[arg-type]


def _placement(names: tuple[str, str] = ("gpu-a", "gpu-b")) -> Placement:
    """Two nodes of one NVLink domain in name order, with "spare-z" held back."""
    candidates = [Candidate(n, "d1", 2) for n in (*names, "spare-z")]
    result = place(candidates, Layout(world_size=4, ranks_per_node=2, ep_size=2,
                                      spares_per_domain=1))
    assert isinstance(result, Placement) and result.node_names == names
    return result


def _replaced() -> Placement:
    """After the first node failed: the spare holds ranks 0-1, so rank order is not the
    (sorted) order in which Slurm numbers tasks."""
    return replace_node(_placement(), "gpu-a", "spare-z")


def _options(tmp_path: Path) -> BatchOptions:
    return BatchOptions(workdir=tmp_path, log_dir=tmp_path / "logs", partition="gpu",
                        time_limit="01:00:00", port_base=31000, port_span=500,
                        extra_args=("--gres=gpu:2",))


def test_script_asks_slurm_for_the_placement_and_keeps_drained_nodes_out(tmp_path: Path) -> None:
    placement = _placement()
    job = batch_script(_spec(tmp_path), placement, 3, ["bad-1", "bad-0"],
                       {"gpu-a": "10.0.0.1"}, _options(tmp_path))
    assert job.name == "dsv3_mini_x-a3"
    sbatch = [line.removeprefix("#SBATCH ") for line in job.script.splitlines()
              if line.startswith("#SBATCH ")]
    nodes = "gpu-a,gpu-b"
    assert sbatch == [
        "--job-name=dsv3_mini_x-a3", "--nodes=2", "--ntasks-per-node=2",
        f"--nodelist={nodes}", f"--chdir={tmp_path}",
        f"--output={tmp_path}/logs/dsv3_mini_x-a3-%j.out",
        f"--error={tmp_path}/logs/dsv3_mini_x-a3-%j.err", "--no-requeue",
        "--exclude=bad-0,bad-1", "--exclusive", "--partition=gpu", "--time=01:00:00",
        "--gres=gpu:2"]
    assert "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in job.script
    assert "export MASTER_ADDR=10.0.0.1" in job.script
    assert batch_script(_spec(tmp_path), placement, 1, [], {}, _options(tmp_path)).script.count(
        "export MASTER_ADDR=gpu-a") == 1  # no address known: the node name
    assert "srun --kill-on-bad-exit=1" in job.script


def test_tasks_get_ranks_from_the_placement_not_slurms_order(tmp_path: Path) -> None:
    placement = _replaced()
    assert placement.node_names == ("spare-z", "gpu-b")
    spec = _spec(tmp_path, command=(sys.executable, "-c", SHOW_ENV, "--steps", "{steps}",
                                    "a b", "--ckpt-dir", "{checkpoint_dir}"))
    job = batch_script(spec, placement, 2, [], {n: "127.0.0.1" for n in placement.node_names},
                       _options(tmp_path))
    tasks = _tasks(tmp_path, job.script, sorted(placement.node_names), rpn=2)
    by_node = {(t["GPUFLEET_NODE"], t["LOCAL_RANK"]): t for t in tasks}
    for node in placement.nodes:
        for slot in node.ranks:
            task = by_node[(node.node, str(slot.local_rank))]
            assert task["RANK"] == str(slot.rank)
    assert sorted(int(t["RANK"]) for t in tasks) == [0, 1, 2, 3]
    for task in tasks:
        assert task["WORLD_SIZE"] == "4" and task["MASTER_ADDR"] == "127.0.0.1"
        assert task["MASTER_PORT"] == str(31000 + 1234 % 500)
        assert task["TORCH_DISABLE_SHARE_RDZV_TCP_STORE"] == "1"
        assert task["WEIRD"] == "it's a $HOME `x` \"q\"" and task["GPUFLEET_ATTEMPT"] == "2"
        assert task["argv"] == ["--steps", "20", "a b", "--ckpt-dir", str(tmp_path / "ck")]


def test_a_task_on_a_node_outside_the_placement_refuses_to_start(tmp_path: Path) -> None:
    placement = _replaced()
    job = batch_script(_spec(tmp_path, command=("true",)), placement, 1, [], {},
                       _options(tmp_path))
    intruder = _fake_srun(tmp_path, job.script, ["intruder"], rpn=2)
    assert intruder.returncode == EXIT_NOT_IN_PLACEMENT
    assert "intruder is not in this placement" in intruder.stderr
    wrong_count = _fake_srun(tmp_path, job.script, list(placement.node_names), rpn=2, ntasks=6)
    assert wrong_count.returncode == EXIT_NOT_IN_PLACEMENT


def _fake_srun(tmp_path: Path, script: str, nodes: list[str], rpn: int,
               ntasks: int | None = None,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    env = {**(env or {}), "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "1234",
           "FAKE_NODES": " ".join(nodes), "FAKE_RPN": str(rpn),
           "FAKE_NTASKS": str(ntasks or len(nodes) * rpn)}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _tasks(tmp_path: Path, script: str, nodes: list[str], rpn: int,
           env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    done = _fake_srun(tmp_path, script, nodes, rpn, env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# What the rank-side reporter makes of the task's environment (braces doubled, as above).
SHOW_REPORTER = ("import json; from agent.ranks.reporter import ProgressReporter as R; "
                 "r = R.from_env(); print(json.dumps({{'socket': r.socket_path, "
                 "'run': r.run_id, 'attempt': r.attempt, 'rank': r.rank, "
                 "'local_rank': r.local_rank}}))")


def test_every_rank_reports_progress_to_its_own_nodes_agent(tmp_path: Path) -> None:
    placement = _replaced()
    spec = _spec(tmp_path, command=(sys.executable, "-c", SHOW_REPORTER))
    options = BatchOptions(workdir=tmp_path, log_dir=tmp_path,
                           progress_socket="/run/gpufleet/{node}/progress.sock")
    job = batch_script(spec, placement, 4, [], {}, options)
    env = dict(os.environ, GPUFLEET_PROGRESS_SOCKET="/elsewhere", PYTHONPATH=str(REPO))
    tasks = _tasks(tmp_path, job.script, sorted(placement.node_names), rpn=2, env=env)
    expected = {s.rank: {"socket": f"/run/gpufleet/{n.node}/progress.sock", "run": "dsv3 mini/x",
                         "attempt": 4, "rank": s.rank, "local_rank": s.local_rank}
                for n in placement.nodes for s in n.ranks}
    assert {t["rank"]: t for t in tasks} == expected and len(tasks) == 4
    default = batch_script(spec, placement, 1, [], {}, BatchOptions(tmp_path, tmp_path))
    assert "progress=/run/gpufleet-agent/progress.sock" in default.script
    off = batch_script(spec, placement, 1, [], {}, BatchOptions(tmp_path, tmp_path,
                                                                 progress_socket=""))
    assert {t["socket"] for t in _tasks(tmp_path, off.script, ["gpu-b", "spare-z"], rpn=2,
                                        env=env)} == {None}  # the submitter's value is cleared


def test_progress_settings_are_checked(tmp_path: Path) -> None:
    placement = _placement()
    reserved = _spec(tmp_path, env={"GPUFLEET_PROGRESS_SOCKET": "/tmp/mine",
                                    "GPUFLEET_RUN_ID": "other", "GPUFLEET_ATTEMPT": "9"})
    with pytest.raises(ValueError) as err:
        batch_script(reserved, placement, 1, [], {}, BatchOptions(tmp_path, tmp_path))
    assert "['GPUFLEET_ATTEMPT', 'GPUFLEET_PROGRESS_SOCKET', 'GPUFLEET_RUN_ID']" in str(err.value)
    for template, message in [("run/p.sock", "absolute path"), ("/run/{host}.sock", "placeholder"),
                              ("/run/" + "x" * 100 + "{node}", "at most 107"),
                              ("/run/a\nb.sock", "unprintable")]:
        with pytest.raises(ValueError, match=message):
            batch_script(_spec(tmp_path), placement, 1, [], {},
                         BatchOptions(tmp_path, tmp_path, progress_socket=template))
    with pytest.raises(ValueError, match="cannot be a progress run id"):
        batch_script(_spec(tmp_path, name="r\u00e9sum\u00e9"), placement, 1, [], {},
                     BatchOptions(tmp_path, tmp_path))
    assert batch_script(_spec(tmp_path, name="r\u00e9sum\u00e9"), placement, 1, [], {},
                        BatchOptions(tmp_path, tmp_path, progress_socket="")).name


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    placement = _placement()
    bad_spec = _spec(tmp_path, world_size=6, env={"RANK": "9", "1BAD": "x"})
    options = BatchOptions(workdir=tmp_path, log_dir=tmp_path, port_base=65000, port_span=1000)
    with pytest.raises(ValueError) as err:
        batch_script(bad_spec, placement, 0, [placement.node_names[0]], {}, options)
    text = str(err.value)
    for expected in ("attempt must be >= 1", "placement has 2 nodes, the spec needs 3",
                     "placement ranks [0, 1, 2, 3] are not 0..5", "are in the placement",
                     "['1BAD', 'RANK']", "leave 1024..65535"):
        assert expected in text
    with pytest.raises(ValueError, match="whitespace"):
        batch_script(_spec(tmp_path), placement, 1, [], {},
                     BatchOptions(workdir=tmp_path / "a b", log_dir=tmp_path))
    with pytest.raises(ValueError, match="not a Slurm node name"):
        batch_script(_spec(tmp_path), placement, 1, ["x;reboot"], {}, _options(tmp_path))
    with pytest.raises(ValueError, match="bad placeholder"):
        batch_script(_spec(tmp_path, command=("python", "-c", "{x: 1}")), placement, 1, [], {},
                     _options(tmp_path))


def test_job_name_is_safe_for_slurm() -> None:
    spec = RunSpec(name="a b/c" * 30, command=("x",), ranks_per_node=1, world_size=1,
                   ep_size=1, checkpoint_dir="/c")
    name = job_name(spec, 12)
    assert name.endswith("-a12") and len(name) <= 68 and " " not in name and "/" not in name


def test_launcher_submits_records_and_reads_the_jobs_fate(tmp_path: Path) -> None:
    placement = _placement(("n1", "n2"))
    fake = FakeSlurm([SlurmNode(n, "idle", address=f"10.0.0.{n[-1]}")
                      for n in ("n1", "n2", "n3", "spare-z")])
    launcher = SlurmLauncher(fake, _options(tmp_path), script_dir=tmp_path / "scripts")
    spec = _spec(tmp_path)
    job = launcher.submit(spec, placement, attempt=1)
    sub = launcher.submission(job)
    assert sub.script == tmp_path / "scripts" / "dsv3_mini_x-a1.sbatch"
    assert fake.scripts[job] == sub.script.read_text()
    assert sub.stderr == tmp_path / "logs" / f"dsv3_mini_x-a1-{job}.err"
    assert sub.nodes == placement.node_names and sub.attempt == 1
    assert "export MASTER_ADDR=10.0.0.1" in fake.scripts[job]
    assert launcher.job_state(job).phase is JobPhase.PENDING

    sub.stderr.write_text("srun: error: n2: task 1: Exited with exit code 17\n")
    fake.set_job(job, "FAILED", exit_code=17, nodes=placement.node_names)
    assert launcher.wait(job, FakeClock(), timeout_s=5).exit_code == 17
    assert launcher.task_exits(job) == [TaskExit("n2", (1,), 17, "Exited with exit code 17")]

    job2 = launcher.submit(spec, replace_node(placement, "n2", "spare-z"), 2, exclude=["n2"])
    assert "#SBATCH --exclude=n2" in fake.scripts[job2]
    assert launcher.task_exits(job2) == []  # no stderr yet
    fake.set_job(job2, "RUNNING")
    with pytest.raises(TimeoutError, match=f"job {job2} still RUNNING"):
        launcher.wait(job2, FakeClock(), timeout_s=5)
    launcher.cancel(job2)
    assert launcher.job_state(job2).phase is JobPhase.CANCELLED
    with pytest.raises(ValueError, match="Slurm does not know"):
        launcher.submit(spec, replace_node(placement, "n1", "x9"), 1)
