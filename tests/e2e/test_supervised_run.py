"""The whole story on real processes: a controller, six simulated GB300 trays in two NVLink
domains (one agent process each), real gloo ranks of the DeepSeek-V3-mini started by the agents.

An XID 79 injected mid-run on one node must stop every rank, drain that node with the XID as
evidence, bring in the spare of the same domain, resume from the latest complete checkpoint and
complete; the resumed losses must equal an uninterrupted run's, step for step (bitwise on CPU).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from demo.harness import REPO, LocalFleet, write_run_spec
from protos.gpufleet.v1 import fleet_pb2 as pb

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

NODES = [f"gb300-d{d}-t{t:02d}" for d in range(2) for t in range(3)]
STEPS = 30


def write_spec(tmp: Path, name: str, steps: int = STEPS, extra: tuple[str, ...] = (),
               budget: int = 3, hang_s: float = 20.0, spares: int = 1) -> Path:
    """The mini spec with this interpreter, a temp checkpoint dir and test knobs."""
    return write_run_spec(tmp / f"{name}.toml", name=name, steps=steps,
                          checkpoint_dir=tmp / f"{name}-ckpt", extra_args=extra,
                          supervision={"restart_budget": budget, "hang_timeout_s": hang_s,
                                       "spares_per_domain": spares})


def run_detail(fleet: LocalFleet, name: str) -> pb.RunDetail:
    with fleet.admin() as stub:
        detail: pb.RunDetail = stub.GetRun(pb.RunRequest(name=name), timeout=10)
    return detail


def losses(path: Path) -> dict[int, str]:
    """step -> loss text exactly as rank 0 printed it."""
    out: dict[int, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("{") and '"loss"' in line:
            rec = json.loads(line)
            out[int(rec["step"])] = repr(rec["loss"])
    return out


def reference_losses(tmp: Path, steps: int) -> dict[int, str]:
    """An uninterrupted 4-rank run with the same seed, launched directly."""
    spec = tomllib.loads((REPO / "examples" / "deepseek_v3_mini.toml").read_text())
    argv = [sys.executable, *spec["run"]["command"][1:]]
    values = {"steps": steps, "checkpoint_dir": str(tmp / "reference-ckpt"),
              "checkpoint_interval": 5, "keep": 3, "ep_size": 2}
    argv = [a.format(**values) for a in argv]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(4):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK="0", WORLD_SIZE="4",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        out = open(tmp / f"reference-{rank}.log", "w")  # noqa: SIM115
        procs.append((subprocess.Popen(argv, cwd=REPO, env=env, stdout=out,
                                       stderr=subprocess.STDOUT), out))
    for proc, out in procs:
        proc.wait(180)
        out.close()
        assert proc.returncode == 0, (tmp / "reference-0.log").read_text()[-2000:]
    return losses(tmp / "reference-0.log")


def test_xid79_mid_run_restarts_on_a_same_domain_spare_and_completes(tmp_path: Path) -> None:
    with LocalFleet("gb300:nodes=6,domain_size=3", NODES, workdir=tmp_path) as fleet:
        spec = write_spec(tmp_path, "mini")
        started = fleet.gpufleet("run", "start", str(spec), "--json")
        assert started.returncode == 0, started.stderr
        first = json.loads(started.stdout)
        placed = first["run"]["nodes"]
        assert len(placed) == 4
        spares = {d: s.split(",") for d, s in first["spares"].items()}
        assert sorted(len(s) for s in spares.values()) == [1, 1]
        victim = placed[-1]  # a node of the second domain's EP group
        victim_domain = next(p["domain"] for p in first["placement"] if p["node"] == victim)

        fleet.wait_for(lambda: run_detail(fleet, "mini").run.step >= 12, 120,
                       "the run to pass step 12")
        fleet.inject(f"xid79@{victim}/gpu0")
        fleet.wait_for(lambda: run_detail(fleet, "mini").run.state in
                       ("completed", "failed", "stopped"), 240, "the run to end")
        detail = run_detail(fleet, "mini")
        assert detail.run.state == "completed", detail.run.reason
        assert detail.run.restarts == 1
        assert victim not in detail.run.nodes
        (spare,) = [n for n in detail.run.nodes if n not in placed]
        assert spare in spares[victim_domain]  # the spare of the SAME NVLink domain
        kinds = [e.kind for e in detail.events]
        for kind in ("placed", "launched", "failure", "stop", "replace", "restart", "completed"):
            assert kind in kinds, kinds
        failure = next(e for e in detail.events if e.kind == "failure")
        assert victim in failure.message and "79" in failure.message

        assert fleet.node_state(victim) == "drained"
        node = fleet.gpufleet("node", "show", victim, "--json")
        assert "79" in node.stdout  # the XID is the evidence of the drain

        ledger = detail.goodput
        assert ledger.restarts == 1 and ledger.detection_s < 5
        assert ledger.productive_steps == STEPS
        assert ledger.HasField("joules_per_step") and ledger.joules_per_step > 0
        assert 0 < ledger.productive_energy_j < ledger.energy_j

        attempt1 = losses(fleet.rank_log(placed[0], "mini", 1, 0))
        attempt2 = losses(fleet.rank_log(detail.run.nodes[0], "mini", 2, 0))
    resumed_from = min(attempt2)
    assert resumed_from > 1 and (resumed_from - 1) % 5 == 0  # the step after a checkpoint
    assert max(attempt2) == STEPS
    reference = reference_losses(tmp_path, STEPS)
    assert {s: reference[s] for s in attempt1} == attempt1
    assert {s: reference[s] for s in attempt2} == attempt2  # bitwise, step for step


def test_crash_loop_is_stopped_by_the_restart_budget(tmp_path: Path) -> None:
    nodes = NODES[:2] + NODES[3:5]
    with LocalFleet("gb300:nodes=6,domain_size=3", nodes, workdir=tmp_path) as fleet:
        spec = write_spec(tmp_path, "crashy", steps=20, budget=1, spares=0,
                          extra=("--fail-at-step", "3", "--fail-rank", "1",
                                 "--fault-mode", "always"))
        t0 = time.monotonic()
        started = fleet.gpufleet("run", "start", str(spec), "--json")
        assert started.returncode == 0, started.stderr
        watched = fleet.gpufleet("run", "status", "crashy", "--watch", "--json",
                                 "--interval", "0.2")
        assert watched.returncode == 1
        detail = json.loads(watched.stdout)
        assert detail["run"]["state"] == "failed"
        assert "budget of 1 exhausted" in detail["run"]["reason"]
        assert "rank 1 exited with 17" in detail["run"]["reason"]
        assert detail["run"]["restarts"] == 1
        assert time.monotonic() - t0 < 120
        events = fleet.gpufleet("run", "events", "crashy", "--json")
        assert events.returncode == 0 and "failed" in events.stdout


def test_hung_rank_is_detected_within_the_hang_timeout(tmp_path: Path) -> None:
    nodes = NODES[:2] + NODES[3:5]
    with LocalFleet("gb300:nodes=6,domain_size=3", nodes, workdir=tmp_path) as fleet:
        spec = write_spec(tmp_path, "hangs", steps=20, budget=0, hang_s=5.0, spares=0,
                          extra=("--hang-at-step", "4", "--fail-rank", "2"))
        started = fleet.gpufleet("run", "start", str(spec))
        assert started.returncode == 0, started.stderr
        fleet.wait_for(lambda: run_detail(fleet, "hangs").run.state == "failed", 120,
                       "the hang to end the run")
        detail = run_detail(fleet, "hangs")
        assert "rank_hang" in detail.run.reason and "no step for" in detail.run.reason
        silent = float(detail.run.reason.split("no step for ")[1].split(" s")[0])
        # the reason shows the silence to 0.1 s, so a hang noticed 5.04 s in reads "5.0"
        assert 5.0 <= silent < 5.0 + 5.0  # noticed soon after the timeout (2 loaded cores)
        assert detail.run.step < 20
