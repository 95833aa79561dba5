"""The controller is killed (SIGKILL) in the middle of a supervised run and started again on the
same database. The run must not be forgotten: the new controller re-attaches to the ranks that
kept training, keeps the step history and goodput of before the crash, and still reacts to what
happened while it was away (here a fatal XID on a node of the run, spooled by that node's agent
and replayed on reconnect): drain, same-domain spare, resume from the checkpoint, complete.
"""

from __future__ import annotations

import json
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
