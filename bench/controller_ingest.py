"""Controller ingest: how many nodes reporting at 1 Hz one controller process keeps up with.

The controller runs as `gpufleet-controller serve` in its own process (real SQLite file, real
gRPC on loopback). One or more load-generator processes each simulate a share of the nodes:
every node has its own stream (its own channel unless --streams-per-channel says otherwise),
says Hello, then sends a realistic report (8 GPUs of telemetry, 3 findings) once per period at
its own phase, and times each report from send to the controller's cumulative Ack, which is
sent only after the report is committed.

    .venv/bin/python bench/controller_ingest.py [--nodes 2048] [--duration 20] [--no-step-up]

Prints, per step: offered and achieved reports/s, client send->ack latency p50/p99/max, the
controller's own receive->commit histogram p50/p99, controller CPU per report, and whether
the step was sustained (p99 < --p99-target, >= 98 % acked, no growing backlog). After the
main run it steps N up until a step is not sustained or --budget seconds are spent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil

from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc

# ---------------------------------------------------------------- load generator (worker)


def template_report(node: str, index: int) -> fleet_pb2.AgentMessage:
    """A realistic report: 8 GPUs of telemetry, 3 findings with evidence."""
    msg = fleet_pb2.AgentMessage()
    r = msg.report
    r.verdict = fleet_pb2.SEVERITY_WARN if index % 20 == 0 else fleet_pb2.SEVERITY_OK
    r.action = fleet_pb2.ACTION_NONE
    r.sweep_duration_s = 0.0042
    for gpu in range(8):
        r.gpus.add(index=gpu, temperature_c=44.0 + gpu, power_w=612.5 + gpu,
                   energy_mj=987_654_321 + gpu, sm_clock_mhz=1980.0, gpu_util_pct=97.5,
                   memory_temp_c=52.0 + gpu)
    checks = (("pcie_replay", "PCIe replay counter grew by 3 in the last minute"),
              ("clock_throttle", "HW slowdown active 0.4 % of the window"),
              ("ecc_sbe", "single-bit ECC errors: 2 volatile"))
    for n, (check, text) in enumerate(checks):
        f = r.findings.add(check=check, gpu=n, message=text, action=fleet_pb2.ACTION_NONE,
                           severity=fleet_pb2.SEVERITY_WARN if r.verdict == fleet_pb2.SEVERITY_WARN
                           else fleet_pb2.SEVERITY_OK)
        f.evidence["value"].number = 3.0 + n
        f.evidence["threshold"].number = 100.0
    return msg


def hello(node: str) -> fleet_pb2.AgentMessage:
    msg = fleet_pb2.AgentMessage()
    h = msg.hello
    h.node, h.hostname, h.sku, h.agent_version = node, node, "h100_sxm", "bench"
    h.driver_version, h.nvlink_domain, h.rack, h.boot_id = "570.86.15", node, "r1", "b1"
    for gpu in range(8):
        h.gpus.add(index=gpu, uuid=f"GPU-{node}-{gpu}", name="NVIDIA H100 80GB HBM3",
                   vbios_version="96.00.99.00.01", pci_bus_id=f"0000:{gpu:02x}:00.0")
    return msg


class SimNode:
    """One simulated node: its stream, what it sent and when, its acks."""

    def __init__(self, name: str, index: int) -> None:
        self.name = name
        self.template = template_report(name, index)
        self.call: Any = None
        self.seq = 0
        self.pending: dict[int, float] = {}
        self.acked = 0

    def next_message(self) -> fleet_pb2.AgentMessage:
        self.seq += 1
        msg = fleet_pb2.AgentMessage()
        msg.CopyFrom(self.template)
        now = time.time()
        msg.seq = self.seq
        msg.sent_at = now
        msg.report.sampled_at = now
        return msg


async def worker(args: argparse.Namespace) -> dict[str, Any]:
    names = [f"bench-{i:05d}" for i in range(args.offset, args.offset + args.count)]
    nodes = [SimNode(n, args.offset + i) for i, n in enumerate(names)]
    per_channel = max(1, args.streams_per_channel)
    channels = [grpc.aio.insecure_channel(args.address)
                for _ in range(math.ceil(len(nodes) / per_channel))]
    latencies: list[float] = []
    window = [math.inf, math.inf]

    async def connect(i: int, node: SimNode) -> None:
        stub = fleet_pb2_grpc.AgentLinkStub(channels[i // per_channel])  # type: ignore[no-untyped-call]
        node.call = stub.Connect()
        await node.call.write(hello(node.name))
        welcome = await node.call.read()
        node.seq = welcome.welcome.last_stored_seq

    async def read_acks(node: SimNode) -> None:
        try:
            while True:
                msg = await node.call.read()
                if msg is grpc.aio.EOF:
                    return
                if msg.WhichOneof("body") != "ack":
                    continue
                now = time.monotonic()
                for seq in [s for s in node.pending if s <= msg.ack.seq]:
                    sent = node.pending.pop(seq)
                    if window[0] <= sent < window[1]:
                        latencies.append(now - sent)
                node.acked = msg.ack.seq
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            return

    for start in range(0, len(nodes), 256):
        await asyncio.gather(*(connect(i, n) for i, n in enumerate(nodes[start:start + 256],
                                                                     start)))
    readers = [asyncio.create_task(read_acks(n)) for n in nodes]
    print("ready", flush=True)
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    t0_wall = float(line.split()[1])
    period = 1.0 / args.rate
    mono_offset = time.monotonic() - time.time()
    t0 = t0_wall + mono_offset
    window[0] = t0 + args.warmup
    window[1] = window[0] + args.duration
    stop_at = window[1]
    cpu0 = time.process_time()
    sent_in_window = 0
    lag_max = 0.0
    unacked_mid = unacked_end = 0
    phases = sorted((i / len(nodes) * period + args.phase, n) for i, n in enumerate(nodes))
    rounds = 0
    mid_sampled = False
    while True:
        base = t0 + rounds * period
        if base >= stop_at:
            break
        for phase, node in phases:
            due = base + phase
            if due >= stop_at:
                break
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
                now = time.monotonic()
            lag_max = max(lag_max, now - due) if now >= window[0] else lag_max
            msg = node.next_message()
            node.pending[msg.seq] = time.monotonic()
            if window[0] <= now < window[1]:
                sent_in_window += 1
            with contextlib.suppress(grpc.aio.AioRpcError):
                await node.call.write(msg)
        rounds += 1
        if not mid_sampled and time.monotonic() >= window[0] + args.duration / 2:
            unacked_mid = sum(len(n.pending) for n in nodes)
            mid_sampled = True
    unacked_end = sum(len(n.pending) for n in nodes)
    drain_deadline = time.monotonic() + 5.0
    while any(n.pending for n in nodes) and time.monotonic() < drain_deadline:
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu0
    lost = sum(len(n.pending) for n in nodes)
    for node in nodes:
        await node.call.done_writing()
    for task in readers:
        task.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for ch in channels:
        await ch.close()
    return {"sent": sent_in_window, "latencies": latencies, "cpu_s": cpu,
            "lag_max_s": lag_max, "unacked_mid": unacked_mid, "unacked_end": unacked_end,
            "unanswered_after_drain": lost,
            "bytes": len(nodes[0].template.SerializeToString()) if nodes else 0}


# ---------------------------------------------------------------- orchestration (parent)


@dataclass
class Step:
    nodes: int
    offered: float
    achieved: float
    p50: float
    p99: float
    worst: float
    server_p50: float
    server_p99: float
    controller_cpu_pct: float
    controller_us_per_report: float
    loadgen_us_per_report: float
    unacked_mid: int
    unacked_end: int
    unanswered: int
    lag_max: float
    sustained: bool
    report_bytes: int
    loadavg: float  # 1-minute load average at the end of the step (other work on the box)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_SAMPLE = re.compile(r'^(gpufleet_ingest_latency_seconds_bucket|gpufleet_ingest_messages_total)'
                     r'\{([^}]*)\} ([0-9.e+-]+)$')


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            out[f"{m[1]}{{{m[2]}}}"] = float(m[3])
    return out


def histogram_quantile(before: dict[str, float], after: dict[str, float], q: float) -> float:
    """The q-quantile of the latency histogram between two scrapes (bucket upper bound,
    interpolated linearly inside the bucket)."""
    buckets: list[tuple[float, float]] = []
    for key, value in after.items():
        if key.startswith("gpufleet_ingest_latency_seconds_bucket"):
            le = key.split('le="')[1].rstrip('"}')
            bound = math.inf if le == "+Inf" else float(le)
            buckets.append((bound, value - before.get(key, 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return math.nan
    rank, lower, below = q * total, 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, cumulative
    return lower


def start_controller(db: Path, args: argparse.Namespace) -> tuple[subprocess.Popen[str], str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    cmd = [sys.executable, "-m", "controller", "serve", "--listen", "127.0.0.1:0",
           "--db", str(db), "--insecure", "--metrics-listen", "127.0.0.1:0",
           "--heartbeat-timeout", "600", "--ingest-linger-ms", str(args.linger_ms),
           "--gc-freeze-interval", str(args.gc_freeze_interval)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    assert proc.stdout is not None
    address = proc.stdout.readline().split()[-1]
    metrics = proc.stdout.readline().split()[-1]
    return proc, address, metrics


def run_step(n: int, duration: float, args: argparse.Namespace) -> Step:
    with tempfile.TemporaryDirectory(prefix="gpufleet-bench-") as tmp:
        proc, address, metrics_url = start_controller(Path(tmp) / "fleet.db", args)
        workers: list[subprocess.Popen[str]] = []
        try:
            k = max(1, min(args.workers, n))
            shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
            offset = 0
            for i, count in enumerate(shares):
                workers.append(subprocess.Popen(
                    [sys.executable, __file__, "--worker", "--address", address,
                     "--offset", str(offset), "--count", str(count),
                     "--duration", str(duration), "--warmup", str(args.warmup),
                     "--rate", str(args.rate), "--phase", str(i / (k * n) / args.rate),
                     "--streams-per-channel", str(args.streams_per_channel)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
                offset += count
            for w in workers:
                assert w.stdout is not None
                if w.stdout.readline().strip() != "ready":
                    raise RuntimeError("a load generator failed to connect its nodes")
            t0 = time.time() + 0.5
            for w in workers:
                assert w.stdin is not None
                w.stdin.write(f"start {t0}\n")
                w.stdin.flush()
            controller = psutil.Process(proc.pid)
            time.sleep(max(0.0, t0 + args.warmup - time.time()))
            before, cpu_before = scrape(metrics_url), controller.cpu_times()
            time.sleep(max(0.0, t0 + args.warmup + duration - time.time()))
            after, cpu_after = scrape(metrics_url), controller.cpu_times()
            results = []
            for w in workers:
                out, _ = w.communicate(timeout=duration + args.warmup + 60)
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
    latencies = [x for r in results for x in r["latencies"]]
    sent = sum(r["sent"] for r in results)
    cpu = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    stored = (after.get('gpufleet_ingest_messages_total{kind="report"}', 0.0)
              - before.get('gpufleet_ingest_messages_total{kind="report"}', 0.0))
    unacked_mid = sum(r["unacked_mid"] for r in results)
    unacked_end = sum(r["unacked_end"] for r in results)
    p99 = percentile(latencies, 0.99)
    growing = unacked_end > max(2 * unacked_mid, n * args.rate * args.p99_target)
    achieved = len(latencies) / duration
    sustained = (p99 < args.p99_target and len(latencies) >= 0.98 * sent and not growing)
    return Step(
        nodes=n, offered=sent / duration, achieved=achieved,
        p50=percentile(latencies, 0.5), p99=p99, worst=max(latencies, default=math.nan),
        server_p50=histogram_quantile(before, after, 0.5),
        server_p99=histogram_quantile(before, after, 0.99),
        controller_cpu_pct=100.0 * cpu / duration,
        controller_us_per_report=1e6 * cpu / stored if stored else math.nan,
        loadgen_us_per_report=1e6 * sum(r["cpu_s"] for r in results) / max(1, sent),
        unacked_mid=unacked_mid, unacked_end=unacked_end,
        unanswered=sum(r["unanswered_after_drain"] for r in results),
        lag_max=max(r["lag_max_s"] for r in results), sustained=sustained,
        report_bytes=results[0]["bytes"], loadavg=os.getloadavg()[0],
    )


def show(step: Step) -> None:
    ms = 1e3
    print(f"{step.nodes:>6} {step.offered:>9.0f} {step.achieved:>9.0f} "
          f"{step.p50 * ms:>7.1f} {step.p99 * ms:>7.1f} {step.worst * ms:>7.1f} "
          f"{step.server_p50 * ms:>7.1f} {step.server_p99 * ms:>7.1f} "
          f"{step.controller_cpu_pct:>6.0f}% {step.controller_us_per_report:>8.0f} "
          f"{step.loadgen_us_per_report:>8.0f} {step.unacked_end:>7} {step.lag_max * ms:>7.0f}"
          f" {step.loadavg:>5.1f}  {'yes' if step.sustained else 'NO'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=2048)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds (main)")
    parser.add_argument("--step-duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=1.0, help="reports per node per second")
    parser.add_argument("--workers", type=int, default=2, help="load-generator processes")
    parser.add_argument("--streams-per-channel", type=int, default=1)
    parser.add_argument("--linger-ms", type=float, default=2.0)
    parser.add_argument("--gc-freeze-interval", type=float, default=10.0,
                        help="the controller's GC tuning (0 = off)")
    parser.add_argument("--p99-target", type=float, default=0.050)
    parser.add_argument("--step-factor", type=float, default=1.5)
    parser.add_argument("--max-nodes", type=int, default=32768)
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for the step-up")
    parser.add_argument("--no-step-up", action="store_true")
    # worker mode (internal)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    parser.add_argument("--offset", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--phase", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(worker(args))), flush=True)
        return
    print(f"controller ingest on {os.cpu_count()} CPUs: {args.workers} load-generator "
          f"processes, {args.streams_per_channel} stream(s) per channel, {args.rate:g} "
          f"report/s per node, p99 target {args.p99_target * 1e3:.0f} ms", flush=True)
    print(f"{'nodes':>6} {'offered/s':>9} {'acked/s':>9} {'p50ms':>7} {'p99ms':>7} "
          f"{'maxms':>7} {'srv50':>7} {'srv99':>7} {'ctlCPU':>7} {'ctl_us/r':>8} "
          f"{'gen_us/r':>8} {'unacked':>7} {'lagms':>7} {'load':>5}  ok", flush=True)
    main_step = run_step(args.nodes, args.duration, args)
    show(main_step)
    print(f"report payload {main_step.report_bytes} bytes; controller CPU per report "
          f"{main_step.controller_us_per_report:.0f} us => one core could store about "
          f"{1e6 / main_step.controller_us_per_report:.0f} reports/s", flush=True)
    if args.no_step_up:
        return
    started = time.monotonic()
    best = main_step.nodes if main_step.sustained else 0
    n = main_step.nodes
    failed_at = 0
    while main_step.sustained and time.monotonic() - started < args.budget:
        n = int(n * args.step_factor)
        if n > args.max_nodes:
            break
        step = run_step(n, args.step_duration, args)
        show(step)
        if not step.sustained:
            failed_at = n
            break
        best = n
    # narrow the gap between the last sustained and the first failed step (bisection)
    while failed_at and failed_at - best > max(128, best // 10) \
            and time.monotonic() - started < args.budget:
        n = (best + failed_at) // 2
        step = run_step(n, args.step_duration, args)
        show(step)
        if step.sustained:
            best = n
        else:
            failed_at = n
    print(f"largest sustained: {best} nodes at {args.rate:g} Hz "
          f"({best * args.rate:.0f} reports/s)", flush=True)


if __name__ == "__main__":
    main()
