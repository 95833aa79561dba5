"""The controller is killed (SIGKILL) in the middle of a supervised run and started again on the
same database. The run must not be forgotten: the new controller re-attaches to the ranks that
kept training, keeps the step history and goodput of before the crash, and still reacts to what
happened while it was away (here a fatal XID on a node of the run, spooled by that node's agent
and replayed on reconnect): drain, same-domain spare, resume from the checkpoint, complete.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from demo.harness import LocalFleet
from protos.gpufleet.v1 import fleet_pb2 as pb
from tests.e2e.test_supervised_run import NODES, run_detail, write_spec

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

STEPS = 40
ENDED = ("completed", "failed", "stopped")


def start_paced_run(fleet: LocalFleet, tmp: Path, name: str, steps: int, step_s: float,
                    past_step: int) -> list[str]:
    """Start the mini run with steps padded to `step_s`; return its nodes once it passed
    `past_step`."""
    spec = write_spec(tmp, name, steps=steps, extra=("--min-step-s", str(step_s)))
    started = fleet.gpufleet("run", "start", str(spec), "--json")
    assert started.returncode == 0, started.stderr
    fleet.wait_for(lambda: run_detail(fleet, name).run.step >= past_step, 120,
                   f"the run to pass step {past_step}")
    return list(json.loads(started.stdout)["run"]["nodes"])


def edit_stored_run(tmp: Path, name: str, **fields: Any) -> None:
    """Play a controller that died at a chosen moment: rewrite fields of the run's stored
    snapshot (and its state column, when `state` is among them)."""
    with sqlite3.connect(tmp / "fleet.db") as db:
        (text,) = db.execute("SELECT record FROM runs WHERE name = ?", (name,)).fetchone()
        doc = {**json.loads(text), **fields}
        db.execute("UPDATE runs SET state = ?, record = ? WHERE name = ?",
                   (doc["state"], json.dumps(doc), name))


def run_to_end(fleet: LocalFleet, name: str) -> pb.RunDetail:
    fleet.wait_for(lambda: run_detail(fleet, name).run.state in ENDED, 240, "the run to end")
    return run_detail(fleet, name)


def test_a_killed_controller_reattaches_to_its_run_and_handles_what_happened_meanwhile(
        tmp_path: Path) -> None:
    with LocalFleet("gb300:nodes=6,domain_size=3", NODES, workdir=tmp_path) as fleet:
        placed = start_paced_run(fleet, tmp_path, "resilient", STEPS, 0.4, past_step=6)
        time.sleep(5.5)  # past one periodic save, so the stored steps have something to show
        before = run_detail(fleet, "resilient")
        assert before.run.attempt == 1 and before.run.state == "running"

        victim = placed[-1]

        def xid_while_down() -> None:
            fleet.inject(f"xid79@{victim}/gpu0")
            time.sleep(1.5)  # the agent sweeps, sees it and spools the event

        fleet.restart_controller(kill=True, while_down=xid_while_down)
        after = run_detail(fleet, "resilient")  # answered from the stored record at once
        assert after.run.step >= 6
        reattached = next(e for e in after.events if e.kind == "reattached")
        assert reattached.attempt == 1
        assert {"placed", "launched"} <= {e.kind for e in after.events}  # the timeline survived

        detail = run_to_end(fleet, "resilient")
        assert detail.run.state == "completed", detail.run.reason
        assert detail.run.restarts == 1 and detail.run.attempt == 2
        assert victim not in detail.run.nodes
        failure = next(e for e in detail.events if e.kind == "failure")
        assert victim in failure.message and "79" in failure.message
        assert fleet.node_state(victim) == "drained"
        assert detail.run.step == STEPS and detail.goodput.restarts == 1
        # the steps seen before the kill survived it (steps made while no controller listened
        # were not observed, and are not claimed)
        assert before.goodput.productive_steps <= detail.goodput.productive_steps < STEPS

        listed = fleet.gpufleet("run", "status", "resilient", "--json")
        assert listed.returncode == 0 and '"completed"' in listed.stdout


def test_a_run_stored_in_the_middle_of_a_restart_is_restarted_by_the_next_controller(
        tmp_path: Path) -> None:
    """The controller dies after deciding a restart and saving that decision, before it
    relaunched. The next controller must finish the job: stop the old ranks, relaunch."""
    with LocalFleet("gb300:nodes=6,domain_size=3", NODES, workdir=tmp_path) as fleet:
        placed = start_paced_run(fleet, tmp_path, "halfway", 24, 0.3, past_step=3)

        def store_a_half_done_restart() -> None:
            edit_stored_run(tmp_path, "halfway", state="restarting", failures=[{
                "kind": "rank_exit", "node": placed[0], "at": time.time(),
                "detail": "rank 1 exited with 17", "rank": 1, "evidence_id": ""}])

        fleet.restart_controller(kill=True, while_down=store_a_half_done_restart)
        detail = run_to_end(fleet, "halfway")
        assert detail.run.state == "completed", detail.run.reason
        assert detail.run.attempt == 2 and detail.run.restarts == 1
        assert list(detail.run.nodes) == placed  # a rank's exit takes no node out
        kinds = [e.kind for e in detail.events]
        assert kinds.index("reattached") < kinds.index("stopped") < kinds.index("restart")
        # attempt 1's ranks were stopped before attempt 2 ran: its rank 0 log ends early
        first = fleet.rank_log(placed[0], "halfway", 1, 0).read_text()
        assert '"step": 24' not in first


def test_a_run_survives_an_agent_restart_on_one_of_its_nodes(tmp_path: Path) -> None:
    """systemd restarts one node's agent mid-run (an upgrade): its ranks die with it, the
    agent says so (spooled, "agent_stopped"); the supervisor restarts the run at once, waits
    for that agent to come back rather than spend a spare, and resumes from the checkpoint."""
    with LocalFleet("gb300:nodes=6,domain_size=3", NODES, workdir=tmp_path) as fleet:
        placed = start_paced_run(fleet, tmp_path, "upgrade", 24, 0.3, past_step=6)
        fleet.restart_agent(placed[1])
        detail = run_to_end(fleet, "upgrade")
        assert detail.run.state == "completed", detail.run.reason
        assert detail.run.restarts == 1 and detail.run.step == 24
        assert list(detail.run.nodes) == placed  # the node came back: no spare spent on it
        # the agent's "shutting down" notice reached the supervisor (usually as the root
        # cause; a peer's "connection closed" may race it) and the relaunch waited for it
        waited = next(e for e in detail.events if e.kind == "agents")
        assert placed[1] in waited.message and waited.message.endswith("back"), waited.message
        resumed = next(e for e in detail.events if e.kind == "restart")
        assert "resumes from checkpoint step" in resumed.message


def test_a_stop_the_controller_did_not_finish_is_finished_by_the_next_one(
        tmp_path: Path) -> None:
    """The operator's stop was saved as the run's intent, then the controller died before
    stopping the ranks and releasing the nodes: the next controller carries it out."""
    with LocalFleet("gb300:nodes=6,domain_size=3", NODES, workdir=tmp_path) as fleet:
        placed = start_paced_run(fleet, tmp_path, "ending", 200, 0.3, past_step=3)

        def store_a_half_done_stop() -> None:
            edit_stored_run(tmp_path, "ending",
                            ending=["operator_stop", "stopped by the operator", False])

        fleet.restart_controller(kill=True, while_down=store_a_half_done_stop)
        detail = run_to_end(fleet, "ending")
        assert detail.run.state == "stopped" and detail.run.reason == "stopped by the operator"
        assert detail.run.step < 200
        fleet.wait_for(lambda: all(fleet.node_state(n) == "ready" for n in placed), 30,
                       "the run's nodes to be released")
        rank0 = fleet.rank_log(placed[0], "ending", 1, 0)
        time.sleep(1.0)
        size = rank0.stat().st_size
        time.sleep(1.5)
        assert rank0.stat().st_size == size  # its ranks were stopped: nothing more is written
