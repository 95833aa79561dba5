"""Parsers of Slurm's output and host lists (pure; samples are real 22.05 output)."""

from __future__ import annotations

import pytest

from controller.slurm.hostlist import HostlistError, check_node_name, expand_hostlist
from controller.slurm.launcher import TaskExit, parse_task_exits
from controller.slurm.model import (
    JobPhase,
    SlurmParseError,
    job_phase,
    parse_sacct_job,
    parse_sbatch_parsable,
    parse_scontrol_job,
    parse_sinfo_nodes,
    parse_squeue,
)

SINFO = """node1|idle|Unknown|Unknown|127.0.0.1|none
node2|idle+drain|root|2026-11-22T20:54:08|127.0.0.1|gpufleet: xid 79 | evidence 12
node3|down+drain+not_responding|slurm|2026-11-22T20:54:27|10.0.0.3|Not responding
node2|idle+drain|root|2026-11-22T20:54:08|127.0.0.1|gpufleet: xid 79 | evidence 12
node4|allocated*|Unknown|Unknown|10.0.0.4|none
"""

SCONTROL_JOB = (
    "JobId=3 JobName=dsv3-a1 UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901757 "
    "Nice=0 Account=(null) QOS=(null) JobState=FAILED Reason=NonZeroExitCode "
    "Dependency=(null) Requeue=0 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=143:0 "
    "RunTime=00:00:01 NodeList=node[1-2] BatchHost=node1 NumNodes=2 NumCPUs=2 "
    "AllocNode:Sid=localhost:1416 ReqNodeList=node[1-2] ExcNodeList=(null) "
    "Command=/tmp/x/j.sh WorkDir=/tmp/x Power=\n")


def test_sinfo_nodes_split_state_flags_and_keep_pipes_in_reasons() -> None:
    nodes = {n.name: n for n in parse_sinfo_nodes(SINFO)}
    assert list(nodes) == ["node1", "node2", "node3", "node4"]  # node2 listed twice, kept once
    assert nodes["node1"].state == "idle" and not nodes["node1"].flags
    assert nodes["node1"].reason == nodes["node1"].reason_user == nodes["node1"].reason_time == ""
    assert nodes["node2"].drained and nodes["node2"].reason == "gpufleet: xid 79 | evidence 12"
    assert nodes["node2"].reason_user == "root"
    assert nodes["node3"].state == "down" and nodes["node3"].out_of_service
    assert nodes["node3"].flags == {"drain", "not_responding"}
    assert nodes["node4"].state == "allocated" and not nodes["node4"].out_of_service
    assert nodes["node4"].address == "10.0.0.4"


@pytest.mark.parametrize("bad", ["node1|idle|root", "|||||", "node1||root|x|y|z"])
def test_sinfo_rejects_lines_without_the_expected_fields(bad: str) -> None:
    with pytest.raises(SlurmParseError):
        parse_sinfo_nodes(bad)


def test_scontrol_job_gives_phase_exit_code_and_expanded_nodes() -> None:
    job = parse_scontrol_job(SCONTROL_JOB, "3")
    assert job.phase is JobPhase.FAILED and job.terminal and not job.succeeded
    assert (job.exit_code, job.signal) == (143, 0)
    assert job.nodes == ("node1", "node2") and job.name == "dsv3-a1"
    assert job.reason == "NonZeroExitCode"


def test_scontrol_pending_job_has_no_exit_code_and_a_readable_reason() -> None:
    line = ("JobId=7 JobName=x JobState=PENDING Reason=launch_failed_requeued_held "
            "ExitCode=0:0 NodeList=(null)")
    job = parse_scontrol_job(line, "7")
    assert job.phase is JobPhase.PENDING and job.exit_code is None
    assert job.reason == "launch failed requeued held" and job.nodes == ()
    with pytest.raises(SlurmParseError, match="JobId=8"):
        parse_scontrol_job(line, "8")
    with pytest.raises(SlurmParseError, match="unknown Slurm job state"):
        parse_scontrol_job("JobId=7 JobState=EXPLODED", "7")


@pytest.mark.parametrize(("state", "phase"), [
    ("PENDING", JobPhase.PENDING), ("REQUEUE_HOLD", JobPhase.PENDING),
    ("RUNNING", JobPhase.RUNNING), ("COMPLETING", JobPhase.RUNNING),
    ("COMPLETED", JobPhase.COMPLETED), ("CANCELLED by 0", JobPhase.CANCELLED),
    ("NODE_FAIL", JobPhase.FAILED), ("TIMEOUT", JobPhase.FAILED),
    ("OUT_OF_ME+", JobPhase.FAILED), ("BOOT_FAIL", JobPhase.FAILED),
])
def test_job_phases(state: str, phase: JobPhase) -> None:
    assert job_phase(state) is phase


def test_sacct_and_squeue_and_sbatch() -> None:
    job = parse_sacct_job("41|train-a2|CANCELLED by 0|0:15|gpu[07-08]\n", "41")
    assert job is not None and job.phase is JobPhase.CANCELLED and job.signal == 15
    assert job.nodes == ("gpu07", "gpu08")
    assert parse_sacct_job("", "41") is None
    queue = parse_squeue("5|a-a1|PENDING||ReqNodeNotAvail, UnavailableNodes:node2\n"
                         "6|b-a1|RUNNING|node[1,3]|None\n")
    assert [(j.job_id, j.phase, j.nodes) for j in queue] == [
        ("5", JobPhase.PENDING, ()), ("6", JobPhase.RUNNING, ("node1", "node3"))]
    assert queue[0].reason == "ReqNodeNotAvail, UnavailableNodes:node2"
    assert parse_sbatch_parsable("1234\n") == "1234"
    assert parse_sbatch_parsable("1235;cluster\n") == "1235"
    with pytest.raises(SlurmParseError):
        parse_sbatch_parsable("sbatch: error: Batch job submission failed\n")


@pytest.mark.parametrize(("text", "names"), [
    ("", []), ("(null)", []), ("node1", ["node1"]),
    ("node[1-3]", ["node1", "node2", "node3"]),
    ("gpu[07-09,11],login", ["gpu07", "gpu08", "gpu09", "gpu11", "login"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
    ("a[8-10]", ["a8", "a9", "a10"]),
])
def test_expand_hostlist(text: str, names: list[str]) -> None:
    assert expand_hostlist(text) == names


@pytest.mark.parametrize("bad", ["node[1-", "node]1[", "node[3-1]", "node[a-b]", "n[[1]]",
                                 "a,,b", "bad name"])
def test_expand_hostlist_rejects_malformed_lists(bad: str) -> None:
    with pytest.raises(HostlistError):
        expand_hostlist(bad)


@pytest.mark.parametrize("bad", ["", "node 1", "node1 State=RESUME", "-x", "a;b"])
def test_node_names_are_checked(bad: str) -> None:
    with pytest.raises(ValueError, match="not a Slurm node name"):
        check_node_name(bad)


def test_task_exits_from_srun_stderr_in_report_order() -> None:
    text = ('{"event": "fault", "kind": "fail", "step": 7, "rank": 1}\n'
            "srun: error: node2: task 1: Exited with exit code 17\n"
            "srun: launch/slurm: _step_signal: Terminating StepId=1.0\n"
            "srun: error: node1: tasks 0,2-3: Terminated\n")
    assert parse_task_exits(text) == [
        TaskExit("node2", (1,), 17, "Exited with exit code 17"),
        TaskExit("node1", (0, 2, 3), None, "Terminated"),
    ]
    assert parse_task_exits("all good\n") == []
