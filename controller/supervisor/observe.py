"""What the supervisor learns from the fleet, applied to a run record: rank exits, rank progress,
energy counters, node-level failures, and the state of a run re-attached after a controller
restart. Functions of their inputs and the record only (no IO); the supervisor routes the
FleetService's messages here and wakes the run's loop.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.fleet.lifecycle import NodeState
from controller.supervisor.decide import (
    TERMINAL,
    Failure,
    FailureKind,
    RunEvent,
    RunState,
    run_transition,
)
from controller.supervisor.ledger import Incident, StepRecord
from controller.supervisor.record import RunRecord
from protos.gpufleet.v1 import fleet_pb2

AGENT_STOPPED = "agent_stopped"  # a RankExit reason: the node's agent shut down under it
BAD_STATES = {NodeState.DRAINED.value: FailureKind.NODE_FATAL,
              NodeState.UNREACHABLE.value: FailureKind.NODE_UNREACHABLE}


def current(record: RunRecord | None, attempt: int) -> bool:
    """Whether a message about `attempt` concerns the record's live attempt."""
    return record is not None and attempt == record.attempt and record.state not in TERMINAL


def note_rank_exit(record: RunRecord, node: str, e: fleet_pb2.RankExit) -> None:
    """A rank of the current attempt exited: 0 counts toward completion, else a failure (a
    rank we stopped ourselves is neither; one its agent stopped while shutting down is lost)."""
    if e.reason == AGENT_STOPPED:
        record.failures.append(Failure(
            FailureKind.RANK_EXIT, node, e.at, f"rank {e.rank} was stopped by its node's agent "
            f"shutting down (exit {e.exit_code})", rank=e.rank))
    elif e.exit_code == 0:
        record.exited_ok.add(e.rank)
    elif e.reason != "stopped":
        tail = e.stderr_tail.strip().splitlines()[-1:] or [""]
        record.failures.append(Failure(
            FailureKind.RANK_EXIT, node, e.at, f"rank {e.rank} exited with {e.exit_code}: "
            f"{tail[0][:200]}", rank=e.rank))


def note_progress(record: RunRecord, p: fleet_pb2.RankProgress, now: float) -> None:
    """A step of a rank of the current attempt; rank 0's steps make the step history."""
    record.last_step_at[p.rank] = now
    if p.rank != 0:
        return
    first = not record.steps or record.steps[-1].attempt != record.attempt
    record.steps.append(StepRecord(record.attempt, int(p.step), now, p.step_time_s))
    record.step, record.loss, record.step_time_s = int(p.step), p.loss, p.step_time_s
    if record.state is RunState.STARTING:  # (not only at the first: a re-attached run may
        record.state = run_transition(record.state, RunEvent.STEPPED)  # have seen it before)
    if not first:
        return
    if record.incidents and record.incidents[-1].resumed_at is None:
        last = record.incidents[-1]
        record.incidents[-1] = Incident(last.fault_at, last.detected_at, now - p.step_time_s)
    record.log(now, "step", f"attempt {record.attempt}: first step {p.step} "
               f"(loss {p.loss:.4f}, {p.step_time_s * 1000:.0f} ms)")


def note_energy(record: RunRecord, node: str, report: fleet_pb2.Report) -> None:
    """The node's GPU energy counters while it serves the run (a lost GPU's series stops)."""
    for gpu in report.gpus:
        if gpu.HasField("energy_mj") and not gpu.lost:
            record.add_energy(f"{node}/gpu{gpu.index}", report.sampled_at, float(gpu.energy_mj))


def node_failure(msg: fleet_pb2.AgentMessage, now: float) -> tuple[float, str] | None:
    """(when, what) if the message says the node failed fatally: a critical XID event or a
    critical report; None otherwise."""
    body = msg.WhichOneof("body")
    if body == "event" and msg.event.WhichOneof("kind") == "xid":
        xid = msg.event.xid
        if xid.severity == fleet_pb2.SEVERITY_CRITICAL:
            return xid.at or now, f"XID {xid.xid} on GPU {xid.gpu}: {xid.message}"
    elif body == "report" and msg.report.verdict == fleet_pb2.SEVERITY_CRITICAL:
        worst = next((f for f in msg.report.findings
                      if f.severity == fleet_pb2.SEVERITY_CRITICAL), None)
        return (msg.report.sampled_at or now,
                f"{worst.check}: {worst.message}" if worst else "critical report")
    return None


def prepare_reattach(record: RunRecord, now: float,
                     state_of: Callable[[str], NodeState | None]) -> None:
    """A stored live run, picked up by a new controller: a fresh hang (or startup) window from
    now, and a failure for every node of it that went bad while nobody watched."""
    record.log(now, "reattached", f"controller restarted: re-attached to attempt "
               f"{record.attempt} ({record.state.value}); last saved "
               f"{now - record.saved_at:.1f} s ago, steps in between were not seen")
    record.last_step_at.clear()
    if record.state is RunState.RUNNING:
        record.last_step_at.update(dict.fromkeys(record.node_of_rank(), now))
    else:
        record.attempt_started_at = now
    for node in record.nodes:
        state = state_of(node)
        if state is not None and state.value in BAD_STATES:
            record.failures.append(Failure(BAD_STATES[state.value], node, now,
                                           f"node {state.value} at re-attach"))
