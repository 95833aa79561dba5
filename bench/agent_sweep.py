"""Agent sweep cost: CPU time per GPU for one full sweep (collect + every check) through the
real NVML code path (faked pynvml), the simulator's cost, the exporter's render, and the
daemon's RSS over a run.

    .venv/bin/python bench/agent_sweep.py [--rounds 200] [--daemon-seconds 20]

Prints per-unit costs; the design target is well under 1 ms of CPU per GPU and a daemon RSS of
tens of MB that stays flat.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from agent.exporter.collector import NodeCollector  # noqa: E402
from agent.exporter.xid import XidCounter  # noqa: E402
from agent.gpu.backend import GpuBackend  # noqa: E402
from agent.gpu.nvml_backend import NvmlBackend  # noqa: E402
from agent.gpu.simulated import build_simulated_backend, parse_sim_spec  # noqa: E402
from agent.policy import default_policy  # noqa: E402
from agent.sweep import Sweeper  # noqa: E402
from gpufleet_common.clock import FakeClock  # noqa: E402
from tests.fakes.nvml_profiles import gb300_node, h100_node  # noqa: E402


def cpu_per_sweep(sweeper: Sweeper, rounds: int, clock: FakeClock) -> float:
    """CPU seconds per full sweep (collect + evaluate), after one warm-up sweep."""
    sweeper.sweep()
    start = time.process_time()
    for _ in range(rounds):
        clock.advance(1.0)
        sweeper.sweep()
    return (time.process_time() - start) / rounds


def bench_backend(label: str, backend: GpuBackend, gpus: int, rounds: int,
                  clock: FakeClock) -> None:
    sweeper = Sweeper(label, backend, clock, default_policy())
    per_sweep = cpu_per_sweep(sweeper, rounds, clock)
    print(f"{label:<34} {per_sweep * 1e6 / gpus:8.0f} µs CPU per GPU "
          f"({per_sweep * 1e3:.2f} ms per {gpus}-GPU sweep)")


def bench_render(rounds: int) -> None:
    clock = FakeClock()
    backend = build_simulated_backend(parse_sim_spec("h100_sxm:load=0.5"), None, clock)
    report = Sweeper("n", backend, clock, default_policy(),
                     lambda _g: backend.host_sample()).sweep()
    registry = CollectorRegistry()
    collector = NodeCollector(registry, xids=XidCounter())
    collector.publish(report)
    start = time.process_time()
    for _ in range(rounds):
        body = generate_latest(registry)
    per = (time.process_time() - start) / rounds
    print(f"{'/metrics scrape, 8-GPU H100':<34} {per * 1e3:8.2f} ms CPU "
          f"({len(body.splitlines())} lines)")


def bench_daemon_rss(seconds: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--simulate", "h100_sxm:load=0.5",
         "--metrics-listen", "127.0.0.1:0", "--interval", "0.1"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = re.search(r"http://\S+/metrics", proc.stdout.readline())
        p = psutil.Process(proc.pid)
        time.sleep(2.0)
        first, cpu0 = p.memory_info().rss, p.cpu_times()
        time.sleep(seconds)
        last, cpu1 = p.memory_info().rss, p.cpu_times()
        cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / seconds
        print(f"{'daemon RSS (10 sweeps/s)':<34} {first / 2**20:8.1f} MiB after 2 s, "
              f"{last / 2**20:.1f} MiB after {seconds + 2:.0f} s; "
              f"{100 * cpu:.1f}% of a core at 10 sweeps/s ({url.group(0) if url else ''})")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--daemon-seconds", type=float, default=20.0)
    args = parser.parse_args()
    clock = FakeClock()
    bench_backend("NVML path (fake), 8x H100", NvmlBackend(nvml=h100_node(8), clock=clock,
                  kernel_log=None, watch_xid=False), 8, args.rounds, clock)
    clock = FakeClock()
    bench_backend("NVML path (fake), 4x GB300", NvmlBackend(nvml=gb300_node(4), clock=clock,
                  kernel_log=None, watch_xid=False), 4, args.rounds, clock)
    clock = FakeClock()
    bench_backend("simulator, 8x H100", build_simulated_backend(
        parse_sim_spec("h100_sxm:load=0.5"), None, clock), 8, args.rounds, clock)
    bench_render(max(10, args.rounds // 10))
    bench_daemon_rss(args.daemon_seconds)


if __name__ == "__main__":
    main()
