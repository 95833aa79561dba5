"""What the supervisor learns from the fleet, applied to a run record (pure functions)."""

from __future__ import annotations

from controller.fleet.lifecycle import NodeState
from controller.supervisor.decide import FailureKind, RunState
from controller.supervisor.ledger import Incident
from controller.supervisor.observe import (
    current,
    node_failure,
    note_progress,
    note_rank_exit,
    prepare_reattach,
)
from controller.supervisor.placement import Candidate, Layout, Placement, place
from controller.supervisor.record import RunRecord
from controller.supervisor.spec import RunSpec
from protos.gpufleet.v1 import fleet_pb2 as pb


def _record(state: RunState = RunState.RUNNING) -> RunRecord:
    nodes = [Candidate(f"n{i}", "d0", 2) for i in range(3)]
    placed = place(nodes, Layout(world_size=4, ranks_per_node=2, ep_size=4, spares_per_domain=1))
    assert isinstance(placed, Placement)
    spec = RunSpec(name="r", command=("x",), ranks_per_node=2, world_size=4, ep_size=4,
                   checkpoint_dir="ck")
    record = RunRecord(spec, placed, {c.name: c.domain for c in nodes}, 0.0)
    record.state, record.attempt = state, 2
    return record


def _exit(rank: int, code: int, reason: str) -> pb.RankExit:
    return pb.RankExit(run_id="r", attempt=2, rank=rank, exit_code=code, reason=reason, at=5.0,
                       stderr_tail="boom\nRuntimeError: NCCL timeout\n")


def test_rank_exits_count_toward_completion_or_become_failures() -> None:
    record = _record()
    note_rank_exit(record, "n0", _exit(0, 0, "exited"))
    note_rank_exit(record, "n0", _exit(1, -15, "stopped"))  # we stopped it: neither
    assert record.exited_ok == {0} and not record.failures
    note_rank_exit(record, "n1", _exit(2, 1, "failed"))
    (failure,) = record.failures
    assert (failure.kind, failure.node, failure.rank) == (FailureKind.RANK_EXIT, "n1", 2)
    assert failure.detail == "rank 2 exited with 1: RuntimeError: NCCL timeout"


def test_a_rank_its_agent_stopped_while_shutting_down_is_lost_even_with_exit_0() -> None:
    record = _record()
    note_rank_exit(record, "n1", _exit(3, 0, "agent_stopped"))
    assert record.exited_ok == set()
    (failure,) = record.failures
    assert failure.kind is FailureKind.RANK_EXIT and "agent shutting down" in failure.detail


def test_only_the_live_attempt_is_current() -> None:
    record = _record()
    assert current(record, 2) and not current(record, 1) and not current(None, 2)
    record.state = RunState.COMPLETED
    assert not current(record, 2)


def test_the_first_step_of_an_attempt_ends_its_restart_and_marks_it_running() -> None:
    record = _record(RunState.STARTING)
    record.incidents = [Incident(10.0, 10.5, None)]
    note_progress(record, pb.RankProgress(run_id="r", attempt=2, rank=1, step=7), now=20.0)
    assert record.last_step_at == {1: 20.0} and not record.steps  # rank 1: no history
    note_progress(record, pb.RankProgress(run_id="r", attempt=2, rank=0, step=7, loss=2.5,
                                          step_time_s=0.5), now=21.0)
    assert record.state is RunState.RUNNING and record.step == 7
    assert record.incidents[-1].resumed_at == 20.5  # the start of the first resumed step
    note_progress(record, pb.RankProgress(run_id="r", attempt=2, rank=0, step=8,
                                          step_time_s=0.5), now=22.0)
    assert [s.step for s in record.steps] == [7, 8]
    assert sum(e.kind == "step" for e in record.events) == 1  # only the first is logged


def test_fatal_xids_and_critical_reports_are_node_failures() -> None:
    fatal = pb.AgentMessage(event=pb.Event(xid=pb.XidEvent(
        xid=79, gpu=3, at=4.0, severity=pb.SEVERITY_CRITICAL, message="fell off the bus")))
    assert node_failure(fatal, now=9.0) == (4.0, "XID 79 on GPU 3: fell off the bus")
    benign = pb.AgentMessage(event=pb.Event(xid=pb.XidEvent(xid=63, severity=pb.SEVERITY_OK)))
    assert node_failure(benign, now=9.0) is None
    report = pb.Report(sampled_at=6.0, verdict=pb.SEVERITY_CRITICAL)
    report.findings.add(check="ecc_dbe", severity=pb.SEVERITY_CRITICAL, message="2 DBE")
    assert node_failure(pb.AgentMessage(report=report), now=9.0) == (6.0, "ecc_dbe: 2 DBE")
    assert node_failure(pb.AgentMessage(report=pb.Report(verdict=pb.SEVERITY_WARN)), 9.0) is None


def test_reattaching_opens_fresh_windows_and_sees_nodes_that_went_bad() -> None:
    running = _record(RunState.RUNNING)
    running.last_step_at = {0: 1.0}
    states = {"n0": NodeState.ALLOCATED, "n1": NodeState.DRAINED}
    prepare_reattach(running, 100.0, states.get)
    assert running.last_step_at == dict.fromkeys(range(4), 100.0)  # hang window from now
    (failure,) = running.failures
    assert (failure.kind, failure.node) == (FailureKind.NODE_FATAL, "n1")
    assert running.events[-1].kind == "reattached"

    starting = _record(RunState.STARTING)
    starting.attempt_started_at = 1.0
    prepare_reattach(starting, 100.0, lambda node: None)
    assert starting.attempt_started_at == 100.0 and not starting.last_step_at


def test_a_reattached_starting_run_becomes_running_on_any_step_of_its_attempt() -> None:
    record = _record(RunState.STARTING)  # stored before its first step's state was saved
    note_progress(record, pb.RankProgress(run_id="r", attempt=2, rank=0, step=3), now=1.0)
    record.state = RunState.STARTING  # ...and re-attached in that state, steps kept
    note_progress(record, pb.RankProgress(run_id="r", attempt=2, rank=0, step=4), now=2.0)
    assert record.state is RunState.RUNNING
