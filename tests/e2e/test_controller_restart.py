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

import pytest

from demo.harness import LocalFleet
from tests.e2e.test_supervised_run import NODES, run_detail, write_spec

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

STEPS = 40


def test_a_killed_controller_reattaches_to_its_run_and_handles_what_happened_meanwhile(
        tmp_path: Path) -> None:
    with LocalFleet("gb300:nodes=6,domain_size=3", NODES, workdir=tmp_path) as fleet:
        spec = write_spec(tmp_path, "resilient", steps=STEPS, extra=("--min-step-s", "0.4"))
        started = fleet.gpufleet("run", "start", str(spec), "--json")
        assert started.returncode == 0, started.stderr
        placed = json.loads(started.stdout)["run"]["nodes"]
        fleet.wait_for(lambda: run_detail(fleet, "resilient").run.step >= 6, 120,
                       "the run to pass step 6")
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

        fleet.wait_for(lambda: run_detail(fleet, "resilient").run.state in
                       ("completed", "failed", "stopped"), 240, "the run to end")
        detail = run_detail(fleet, "resilient")
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
        spec = write_spec(tmp_path, "halfway", steps=24, extra=("--min-step-s", "0.3"))
        started = fleet.gpufleet("run", "start", str(spec), "--json")
        assert started.returncode == 0, started.stderr
        placed = json.loads(started.stdout)["run"]["nodes"]
        fleet.wait_for(lambda: run_detail(fleet, "halfway").run.step >= 3, 120,
                       "the run to pass step 3")

        def store_a_half_done_restart() -> None:
            with sqlite3.connect(tmp_path / "fleet.db") as db:
                (text,) = db.execute("SELECT record FROM runs WHERE name = 'halfway'").fetchone()
                doc = json.loads(text)
                doc["state"] = "restarting"
                doc["failures"] = [{"kind": "rank_exit", "node": placed[0], "at": time.time(),
                                    "detail": "rank 1 exited with 17", "rank": 1,
                                    "evidence_id": ""}]
                db.execute("UPDATE runs SET state = 'restarting', record = ? "
                           "WHERE name = 'halfway'", (json.dumps(doc),))

        fleet.restart_controller(kill=True, while_down=store_a_half_done_restart)
        fleet.wait_for(lambda: run_detail(fleet, "halfway").run.state in
                       ("completed", "failed", "stopped"), 240, "the run to end")
        detail = run_detail(fleet, "halfway")
        assert detail.run.state == "completed", detail.run.reason
        assert detail.run.attempt == 2 and detail.run.restarts == 1
        assert list(detail.run.nodes) == placed  # a rank's exit takes no node out
        kinds = [e.kind for e in detail.events]
        assert kinds.index("reattached") < kinds.index("stopped") < kinds.index("restart")
        # attempt 1's ranks were stopped before attempt 2 ran: its rank 0 log ends early
        first = fleet.rank_log(placed[0], "halfway", 1, 0).read_text()
        assert '"step": 24' not in first
