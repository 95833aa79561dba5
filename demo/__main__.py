"""`make demo`: the whole gpufleet story on this machine, with real processes.

1. One node: `gpufleet-agent check` on a simulated 8-GPU H100 node with an injected ECC fault.
2. A fleet: a controller (SQLite) and 16 simulated GB300 trays in 2 NVLink domains, each its
   own agent process; two trays are faulty. `gpufleet nodes`, then `gpufleet preflight --all`.
3. A burn-in: single-node gloo all-reduce on four trays, one of them made slow on purpose.
4. A run: the DeepSeek-V3-shaped mini model trained by real torch.distributed ranks the agents
   start; an XID 79 mid-run; the supervisor stops the ranks, drains the tray, brings in the
   spare of the same NVLink domain and resumes from the last complete checkpoint; then the
   controller itself is killed (-9) and started again: it re-attaches to the run from its
   database; the run completes and the goodput ledger shows where the time and the energy went.

    python -m demo [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from demo.harness import PY, REPO, LocalFleet, write_run_spec
from protos.gpufleet.v1 import fleet_pb2 as pb

WIDTH = 150
console = Console(width=max(WIDTH, Console().width))
NODES = [f"gb300-d{d}-t{t:02d}" for d in range(2) for t in range(8)]
FAULTS = ("fault=ecc_dbe@gb300-d0-t03/gpu2", "fault=nvlink_down@gb300-d1-t05/gpu1")


def step(title: str) -> None:
    console.print()
    console.print(Rule(f"[bold]{title}"))


def show(cmd: list[str], result: subprocess.CompletedProcess[str]) -> None:
    console.print(f"[dim]$ {' '.join(cmd)}[/]  [dim](exit {result.returncode})[/]")
    sys.stdout.write(result.stdout)
    if result.returncode not in (0, 1, 2) and result.stderr:
        sys.stdout.write(result.stderr)
    sys.stdout.flush()


def cli(fleet: LocalFleet, *args: str) -> subprocess.CompletedProcess[str]:
    result = fleet.gpufleet(*args)
    show(["gpufleet", *args], result)
    return result


def one_node() -> None:
    step("1. one node: gpufleet-agent check on a simulated H100 node with one bad GPU")
    cmd = [PY, "-m", "agent", "check", "--simulate", "h100_sxm:fault=ecc_dbe@gpu3"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=60,
                            env=dict(os.environ, COLUMNS=str(WIDTH)))
    show(["gpufleet-agent", *cmd[3:]], result)
    console.print("[dim]exit 2 = CRITICAL (Nagios): usable as Slurm's HealthCheckProgram[/]")


def burnin(fleet: LocalFleet) -> None:
    step("3. burn-in: all-reduce on four trays one at a time (gloo ranks), one made 4x slower")
    probe = fleet.gpufleet("burnin", "--help")
    if probe.returncode != 0:
        console.print("[yellow]this build has no burn-in orchestration; skipping[/]")
        return
    nodes = ["gb300-d0-t00", "gb300-d0-t01", "gb300-d1-t00", "gb300-d1-t01"]
    cli(fleet, "burnin", *nodes, "--sizes", "1M,4M", "--ranks-per-node", "2",
        "--option", "gb300-d1-t01:slowdown=4", "--max-parallel", "1", "--no-progress")


def run_story(fleet: LocalFleet) -> None:
    step("4. the run: place, train, lose a GPU (XID 79), restart on a spare, lose the "
         "controller, finish")
    spec = write_run_spec(fleet.workdir / "dsv3-mini.toml",
                          checkpoint_dir=fleet.workdir / "checkpoints",
                          extra_args=("--min-step-s", "0.25"))  # a bigger model's pace
    started = cli(fleet, "run", "start", str(spec))
    if started.returncode != 0:
        console.print(f"[red]{started.stderr}[/]")
        return
    wait_for(fleet, lambda r: r.step >= 14, "step 14")
    victim = run_of(fleet).nodes[-1]
    console.print(f"\n[bold red]>>> injecting XID 79 (GPU fallen off the bus) on {victim}, "
                  f"GPU 0, at step {run_of(fleet).step}[/]\n")
    fleet.inject(f"xid79@{victim}/gpu0")
    t0 = time.monotonic()
    wait_for(fleet, lambda r: r.attempt == 2 and r.state == "running", "the resumed run")
    console.print(f"[dim]running again on the spare {time.monotonic() - t0:.1f} s after the "
                  f"fault, at step {run_of(fleet).step}[/]")
    time.sleep(2.0)  # a few steps more (and the supervisor's next save)
    console.print("\n[bold red]>>> kill -9 the controller, then start it again on the same "
                  "database[/]\n")
    fleet.restart_controller(kill=True)
    run = run_of(fleet)
    console.print(f"[dim]controller back on {fleet.address}: run {run.name} {run.state}, "
                  f"attempt {run.attempt}, step {run.step} (from its stored record)[/]")
    wait_for(fleet, lambda r: r.state in ("completed", "failed", "stopped"), "the run to end")
    cli(fleet, "run", "events", "dsv3-mini")
    cli(fleet, "run", "status", "dsv3-mini")
    cli(fleet, "node", "show", victim)


def run_of(fleet: LocalFleet) -> pb.RunView:
    with fleet.admin() as stub:
        detail: pb.RunDetail = stub.GetRun(pb.RunRequest(name="dsv3-mini"), timeout=10)
    return detail.run


def wait_for(fleet: LocalFleet, condition: Callable[[pb.RunView], bool], what: str) -> None:
    fleet.wait_for(lambda: condition(run_of(fleet)), 300, what, poll_s=0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description="gpufleet demo")
    parser.add_argument("--keep", type=Path, help="keep logs and the fleet DB in this folder")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="gpufleet-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    one_node()
    step("2. a fleet: controller + 16 simulated GB300 trays in 2 NVLink domains, 2 faulty")
    spec = "gb300:nodes=16,domain_size=8," + ",".join(FAULTS)
    console.print(f"[dim]simulation: {spec}; logs and state in {workdir}[/]")
    with LocalFleet(spec, NODES, workdir=workdir, interval_s=1.0, columns=WIDTH) as fleet:
        console.print(f"[dim]controller on {fleet.address}, {len(NODES)} agents connected[/]")
        time.sleep(2.0)  # a couple of sweeps of evidence
        cli(fleet, "nodes")
        cli(fleet, "preflight", "--all", "--run", "dsv3-mini", "--no-progress")
        burnin(fleet)
        run_story(fleet)
    console.print(f"\n[bold green]demo complete[/] — logs, rank outputs and the fleet DB: "
                  f"{workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
