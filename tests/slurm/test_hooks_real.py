"""deploy/slurm hooks against the real cluster: the health check run by hand with simulated
GPUs, and the prolog/epilog run by slurmd itself around real jobs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from controller.slurm.model import JobPhase
from controller.slurm.sync import SlurmNodeSync
from gpufleet_common.clock import SystemClock
from tests.slurm.conftest import DEPLOY, SlurmCluster, agent_executable
from tests.slurm.helpers import READY, wait_job, write_job

HEALTHCHECK = DEPLOY / "gpufleet-healthcheck.sh"


def _healthcheck(slurm: SlurmCluster, tmp_path: Path, node: str, simulate: str,
                 **extra: str) -> subprocess.CompletedProcess[str]:
    """Run the health check as slurmd would on `node`, configured through the environment."""
    env = {"PATH": os.environ["PATH"], "SLURMD_NODENAME": node, "SLURM_CONF": str(slurm.conf),
           "GPUFLEET_SLURM_ENV": str(tmp_path / "absent.env"),
           "GPUFLEET_AGENT": str(agent_executable()), "GPUFLEET_PYTHON": sys.executable,
           "GPUFLEET_SIMULATE": simulate, **extra}
    return subprocess.run([str(HEALTHCHECK)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def _reason(slurm: SlurmCluster, node: str) -> str:
    return slurm.run("sinfo", "-h", "-N", "-n", node, "-O", "Reason:0").stdout.strip()


def test_healthcheck_healthy_node_exits_0_and_drains_nothing(slurm: SlurmCluster,
                                                              tmp_path: Path) -> None:
    done = _healthcheck(slurm, tmp_path, "node1", "h100_sxm")
    assert done.returncode == 0, done.stderr
    assert slurm.node_states()["node1"] == "idle"


def test_healthcheck_ecc_dbe_drains_the_node_with_the_agent_reason(slurm: SlurmCluster,
                                                                    tmp_path: Path) -> None:
    done = _healthcheck(slurm, tmp_path, "node3", "h100_sxm:fault=ecc_dbe@gpu3")
    assert done.returncode == 2, done.stderr
    assert "drained" in done.stderr
    assert slurm.node_states()["node3"] == "idle+drain"
    assert _reason(slurm, "node3") == "gpufleet-agent: xid gpu3 (+1 more)"
    # The agent's drain is not the controller's: reconcile does not resume it.
    assert SlurmNodeSync(slurm.commands(), SystemClock()).sync(
        {"node3": READY}).held_by_others == ("node3",)


def test_healthcheck_warn_unknown_and_report_only_never_drain(slurm: SlurmCluster,
                                                              tmp_path: Path) -> None:
    warn = _healthcheck(slurm, tmp_path, "node1", "h100_sxm:fault=remap_pending@gpu2")
    assert warn.returncode == 1, warn.stderr
    unknown = _healthcheck(slurm, tmp_path, "node1", "no_such_sku")
    assert unknown.returncode == 3 and "UNKNOWN" in unknown.stderr
    report_only = _healthcheck(slurm, tmp_path, "node1", "h100_sxm:fault=xid79@gpu1",
                               GPUFLEET_DRAIN="0")
    assert report_only.returncode == 2 and "not draining" in report_only.stderr
    assert slurm.node_states()["node1"] == "idle"


def test_healthcheck_keeps_an_operator_drain_and_its_reason(slurm: SlurmCluster,
                                                            tmp_path: Path) -> None:
    slurm.run("scontrol", "update", "NodeName=node2", "State=DRAIN", "Reason=reseat GPU 3")
    done = _healthcheck(slurm, tmp_path, "node2", "h100_sxm:fault=ecc_dbe@gpu3")
    assert done.returncode == 2 and "reason kept" in done.stderr
    assert _reason(slurm, "node2") == "reseat GPU 3"


def test_prolog_refuses_a_job_on_a_critical_node_and_slurm_drains_it(slurm: SlurmCluster,
                                                                     tmp_path: Path) -> None:
    slurm.simulate("node3", "h100_sxm:fault=ecc_dbe@gpu3")
    commands = slurm.commands()
    ran = tmp_path / "ran"
    job_id = commands.submit(write_job(tmp_path / "j.sh", f"touch {ran}", "--nodelist=node3",
                                       "--no-requeue", f"--output={tmp_path}/j.out"))
    job = wait_job(commands, job_id)
    assert job.phase is not JobPhase.COMPLETED, job
    assert not ran.exists()  # the job's command never ran
    assert "drain" in slurm.node_states()["node3"]
    assert _reason(slurm, "node3") == "gpufleet-agent: xid gpu3 (+1 more)"


def test_prolog_lets_jobs_start_on_healthy_nodes(slurm: SlurmCluster, tmp_path: Path) -> None:
    commands = slurm.commands()
    job_id = commands.submit(write_job(tmp_path / "ok.sh", "srun true", "--nodes=3",
                                       f"--output={tmp_path}/ok.out"))
    assert wait_job(commands, job_id).phase is JobPhase.COMPLETED
    assert all(state == "idle" for state in slurm.node_states().values())


def test_epilog_drains_a_node_the_job_left_broken(slurm: SlurmCluster, tmp_path: Path) -> None:
    commands = slurm.commands()
    # The job "loses" GPU 1 while it runs; the epilog's check after it sees the loss.
    breaks_gpu = f"echo 'h100_sxm:fault=xid79@gpu1' > {slurm.hooks}/simulate/node2"
    job_id = commands.submit(write_job(tmp_path / "b.sh", breaks_gpu, "--nodelist=node2",
                                       f"--output={tmp_path}/b.out"))
    assert wait_job(commands, job_id).phase is JobPhase.COMPLETED
    slurm.wait_until("node2 drained by the epilog",
                     lambda: "drain" in slurm.node_states()["node2"], 15)
    assert _reason(slurm, "node2") == "gpufleet-agent: gpu_lost gpu1 (+1 more)"


def test_the_slurm_conf_excerpt_is_in_effect(slurm: SlurmCluster) -> None:
    config: dict[str, str] = {}
    for line in slurm.run("scontrol", "show", "config").stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    hooks = f"{slurm.hooks}/"
    assert config["HealthCheckProgram"] == hooks + "gpufleet-healthcheck.sh"
    assert config["HealthCheckInterval"] == "300 sec"
    assert set(config["HealthCheckNodeState"].split(",")) == {"ANY", "CYCLE"}
    assert config["Prolog"] == hooks + "gpufleet-prolog.sh"
    assert config["Epilog"] == hooks + "gpufleet-epilog.sh"
    assert config["PrologFlags"] == "Alloc"
    assert config["PrologEpilogTimeout"] == "120"
