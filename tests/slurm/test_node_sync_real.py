"""Node-state sync and the command seam against a real slurmctld and three slurmd."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.fleet.lifecycle import NodeState
from controller.slurm.commands import JobNotFound, SlurmError, SubprocessSlurm
from controller.slurm.model import JobPhase
from controller.slurm.reconcile import Drain, FleetNodeView, Resume
from controller.slurm.sync import SlurmNodeSync
from gpufleet_common.clock import SystemClock
from tests.slurm.conftest import SlurmCluster
from tests.slurm.helpers import READY, Recording, wait_job, write_job

XID79 = FleetNodeView(NodeState.DRAINED, "fatal_event: XID 79 GPU has fallen off the bus on gpu 5",
                      7901)
XID79_REASON = "gpufleet: fatal_event: XID 79 GPU has fallen off the bus on gpu 5 (evidence 7901)"


def _sinfo_reasons(slurm: SlurmCluster) -> dict[str, str]:
    out = slurm.run("sinfo", "-R", "-h", "-N", "-o", "%N|%E").stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def test_a_gpufleet_drain_shows_in_sinfo_and_jobs_avoid_the_node(
        slurm: SlurmCluster, tmp_path: Path) -> None:
    commands = slurm.commands()
    sync = SlurmNodeSync(commands, SystemClock())
    report = sync.sync({"node1": READY, "node2": XID79, "node3": READY})
    assert report.ok, report.lines()
    assert report.applied == (Drain("node2", XID79_REASON),)
    assert _sinfo_reasons(slurm) == {"node2": XID79_REASON}
    assert slurm.node_states()["node2"] == "idle+drain"
    [node2] = [n for n in commands.nodes() if n.name == "node2"]
    assert node2.drained and node2.reason_user == "root" and node2.reason_time

    out = tmp_path / "two.out"
    job_id = commands.submit(write_job(tmp_path / "two.sh", "srun hostname", "--nodes=2",
                                       f"--output={out}"))
    job = wait_job(commands, job_id)
    assert job.phase is JobPhase.COMPLETED and job.exit_code == 0
    assert job.nodes == ("node1", "node3")


def test_b_undrain_resumes_once_gpufleet_finds_the_node_ready(slurm: SlurmCluster) -> None:
    sync = SlurmNodeSync(slurm.commands(), SystemClock())
    assert sync.sync({"node2": XID79}).applied == (Drain("node2", XID79_REASON),)

    # `gpufleet undrain` lands the node in registered: it must pass preflight before Slurm
    # may use it again, so the drain stays.
    report = sync.sync({"node2": FleetNodeView(NodeState.REGISTERED, "operator_undrain")})
    assert report.applied == () and report.ok
    assert "drain" in slurm.node_states()["node2"]

    report = sync.sync({"node2": READY})
    assert report.applied == (Resume("node2", XID79_REASON),)
    assert "drain" not in slurm.node_states()["node2"]
    # Slurm marks a resumed node not_responding until its next ping of slurmd.
    slurm.wait_until("node2 idle", lambda: slurm.node_states()["node2"] == "idle", 10)
    assert _sinfo_reasons(slurm) == {}


def test_c_operator_drain_and_reason_are_never_touched(slurm: SlurmCluster) -> None:
    operator = "PSU swap in rack 12, ticket 881"
    slurm.run("scontrol", "update", "NodeName=node3", "State=DRAIN", f"Reason={operator}")
    sync = SlurmNodeSync(slurm.commands(), SystemClock())
    for view in (READY, XID79, FleetNodeView(NodeState.SUSPECT, "preflight_failed", 9),
                 READY):
        report = sync.sync({"node3": view})
        assert report.applied == () and report.ok, (view, report.lines())
        assert _sinfo_reasons(slurm) == {"node3": operator}
    assert sync.sync({"node3": READY}).held_by_others == ("node3",)

    # An operator's drain on top of gpufleet's makes the node theirs: no resume either.
    assert sync.sync({"node2": XID79}).applied == (Drain("node2", XID79_REASON),)
    slurm.run("scontrol", "update", "NodeName=node2", "State=DRAIN", "Reason=bad DIMM, keep out")
    assert sync.sync({"node2": READY}).applied == ()
    assert _sinfo_reasons(slurm)["node2"] == "bad DIMM, keep out"


def test_d_reconcile_is_idempotent_second_pass_issues_no_commands(slurm: SlurmCluster) -> None:
    recording = Recording(slurm.commands())
    sync = SlurmNodeSync(recording, SystemClock())
    ugly = 'xid 79 | "fell off" the bus\n on gpu=5 ' + "x" * 400
    states = {"node1": FleetNodeView(NodeState.SUSPECT, ugly, "ev-1"), "node2": XID79,
              "node3": READY, "node9": READY}
    first = sync.sync(states)
    assert [type(a).__name__ for a in first.applied] == ["Drain", "Drain"]
    assert first.unknown_to_slurm == ("node9",)
    stored = _sinfo_reasons(slurm)["node1"]
    assert stored.startswith("gpufleet: xid 79 fell off the bus on gpu 5 xxx")
    assert stored.endswith("... (evidence ev-1)") and len(stored) <= 200

    recording.calls.clear()
    second = sync.sync(states)
    assert second.applied == () and second.ok
    assert recording.calls == [("nodes",)]  # read Slurm, changed nothing


def test_seam_errors_name_the_command_and_carry_stderr(slurm: SlurmCluster,
                                                       tmp_path: Path) -> None:
    commands = slurm.commands()
    with pytest.raises(SlurmError) as err:
        commands.drain("node9", "gpufleet: test")
    assert err.value.command[:2] == ("scontrol", "update")
    assert "Invalid node name specified" in err.value.stderr and err.value.returncode == 1
    with pytest.raises(SlurmError, match="Invalid node state"):
        commands.resume("node1")  # not drained
    with pytest.raises(JobNotFound):
        commands.job("987654")  # accounting is disabled in the test cluster
    with pytest.raises(SlurmError, match="not installed"):
        SubprocessSlurm(slurm.env, bin_dir=tmp_path).nodes()
    with pytest.raises(ValueError, match="not a Slurm node name"):
        commands.drain("node1 State=RESUME", "x")

    job_id = commands.submit(write_job(tmp_path / "sleep.sh", "sleep 30", "--nodes=1",
                                       f"--output={tmp_path}/sleep.out"))
    assert any(j.job_id == job_id for j in commands.queue())
    commands.cancel(job_id)
    assert wait_job(commands, job_id).phase is JobPhase.CANCELLED
    commands.cancel(job_id)  # already over: not an error
