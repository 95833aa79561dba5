"""Supervisor latency on real processes: fault → stop directives, fault → first resumed step,
against a cold start from the same checkpoint.

A local fleet (controller + 8 simulated GB300 trays in 2 NVLink domains, one agent process
each) trains the DeepSeek-V3 mini (4 gloo ranks). At step >= 12 an XID 79 is injected on a node
of the run; the run's timeline gives the fault time (the XID's own timestamp), the moment the
stop directives went out and the first resumed step. Then a second run is started cold on a copy
of the checkpoint the restart resumed from, and its launch → first step is measured.

    .venv/bin/python bench/supervisor_latency.py

The simulated XID enters at the agent's next sweep (interval 0.5 s here); NVML delivers real
XIDs to the agent's event thread at once, so detection on hardware is bounded by the stream.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from demo.harness import LocalFleet, write_run_spec  # noqa: E402
from protos.gpufleet.v1 import fleet_pb2 as pb  # noqa: E402

NODES = [f"gb300-d{d}-t{t:02d}" for d in range(2) for t in range(4)]


def detail(fleet: LocalFleet, name: str) -> pb.RunDetail:
    with fleet.admin() as stub:
        got: pb.RunDetail = stub.GetRun(pb.RunRequest(name=name), timeout=10)
    return got


def first_step_after(d: pb.RunDetail, attempt: int) -> float:
    return next(e.at for e in d.events if e.kind == "step" and e.attempt == attempt)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="gpufleet-bench-sup-"))
    with LocalFleet("gb300:nodes=8,domain_size=4", NODES, workdir=work) as fleet:
        spec = write_run_spec(work / "warm.toml", name="warm", steps=30,
                              checkpoint_dir=work / "warm-ckpt")
        assert fleet.gpufleet("run", "start", str(spec)).returncode == 0
        fleet.wait_for(lambda: detail(fleet, "warm").run.step >= 12, 180, "step 12")
        victim = detail(fleet, "warm").run.nodes[-1]
        fleet.inject(f"xid79@{victim}/gpu0")
        fleet.wait_for(lambda: any(e.kind == "restart" for e in detail(fleet, "warm").events),
                       60, "the restart")
        restart_msg = next(e.message for e in detail(fleet, "warm").events if e.kind == "restart")
        resumed_ckpt = int(restart_msg.split("checkpoint step ")[1])
        src = work / "warm-ckpt" / f"step_{resumed_ckpt:08d}"
        cold_ckpt = work / "cold-ckpt"
        shutil.copytree(src, cold_ckpt / src.name)  # before retention can delete it
        fleet.wait_for(lambda: detail(fleet, "warm").run.state == "completed", 300, "completion")
        d = detail(fleet, "warm")
        fault = d.goodput  # keep the ledger for the summary
        events = {e.kind: e for e in d.events}
        failure, stop = events["failure"], events["stop"]
        resumed_at = first_step_after(d, 2)
        resumed_step = next(int(e.message.split("first step ")[1].split()[0])
                            for e in d.events if e.kind == "step" and e.attempt == 2)
        launched2 = next(e.at for e in d.events if e.kind == "launched" and e.attempt == 2)
        detected = failure.at
        fault_at = detected - fault.detection_s

        cold = write_run_spec(work / "cold.toml", name="cold", steps=30, checkpoint_dir=cold_ckpt)
        assert fleet.gpufleet("run", "start", str(cold)).returncode == 0
        fleet.wait_for(lambda: detail(fleet, "cold").run.step >= resumed_step, 180, "cold step")
        c = detail(fleet, "cold")
        cold_launch = next(e.at for e in c.events if e.kind == "launched")
        cold_first = first_step_after(c, 1)
        fleet.gpufleet("run", "stop", "cold")

    restart = resumed_at - fault_at
    cold_start = cold_first - cold_launch
    print(f"fault -> detected:            {detected - fault_at:6.2f} s")
    print(f"fault -> stop directives:     {stop.at - fault_at:6.2f} s")
    print(f"fault -> relaunch directives: {launched2 - fault_at:6.2f} s")
    print(f"fault -> first resumed step:  {restart:6.2f} s (resumed at step {resumed_step})")
    print(f"cold start, same checkpoint:  {cold_start:6.2f} s (launch -> first step)")
    print(f"restart / cold start:         {restart / cold_start:6.2f}x  (target <= 1.5x)")
    print(f"goodput of the faulted run:   {100 * fault.goodput:5.1f}% of {fault.wall_s:.1f} s "
          f"({fault.recomputed_steps} steps recomputed)")


if __name__ == "__main__":
    main()
