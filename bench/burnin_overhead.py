"""Burn-in overhead: the worker's measured busbw vs a bare torch.distributed all-reduce loop.

Both run in one invocation, same sizes, same rank count, same backend (gloo on this CPU-only
machine, NCCL where CUDA is present), alternating bare/worker rounds so drift hits both alike.
Prints per-size busbw and the overhead ratio (1 − worker/bare). Target: ≤ 5 %.

    .venv/bin/python bench/burnin_overhead.py [--ranks 2] [--sizes 1M,16M,64M] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.burnin.runner import BurnInJob, run_burnin  # noqa: E402
from agent.burnin.spec import bandwidths  # noqa: E402
from gpufleet_common.sizes import parse_sizes  # noqa: E402

BARE = """
import os, sys, time, torch, torch.distributed as dist
torch.set_num_threads(1)
sizes = [int(s) for s in sys.argv[1].split(",")]
warmup, iters = int(sys.argv[2]), int(sys.argv[3])
cuda = torch.cuda.is_available()
dev = torch.device("cuda", int(os.environ["LOCAL_RANK"])) if cuda else torch.device("cpu")
dist.init_process_group("nccl" if cuda else "gloo")
for size in sizes:
    buf = torch.zeros(size // 4, dtype=torch.float32, device=dev)
    for _ in range(warmup):
        dist.all_reduce(buf)
    if cuda: torch.cuda.synchronize()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(iters):
        dist.all_reduce(buf)
    if cuda: torch.cuda.synchronize()
    t = torch.tensor([(time.perf_counter() - t0) / iters], dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if dist.get_rank() == 0:
        print(size, t.item(), flush=True)
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bare_round(sizes: list[int], ranks: int, warmup: int, iters: int) -> dict[int, float]:
    """busbw per size from the bare loop (seconds per op → GB/s)."""
    port = _free_port()
    procs = []
    for rank in range(ranks):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(ranks),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen(
            [sys.executable, "-c", BARE, ",".join(map(str, sizes)), str(warmup), str(iters)],
            env=env, stdout=subprocess.PIPE if rank == 0 else subprocess.DEVNULL, text=True))
    out, _ = procs[0].communicate(timeout=300)
    for proc in procs[1:]:
        proc.wait(timeout=60)
    result = {}
    for line in out.splitlines():
        size, seconds = line.split()
        result[int(size)] = bandwidths(int(size), float(seconds), ranks)[1]
    return result


def worker_round(sizes: str, ranks: int, warmup: int, iters: int) -> dict[int, float]:
    job = BurnInJob(sizes=sizes, warmup=warmup, iters=iters, world_size=ranks,
                    local_ranks=ranks, master_port=_free_port(), timeout_s=300)
    result = run_burnin(job, cwd=REPO)
    if not result.ok:
        raise SystemExit(f"burn-in failed: {result.error}")
    return {s.bytes: s.busbw_gbps for s in result.sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--sizes", default="1M,16M,64M")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = list(parse_sizes(args.sizes))
    bare: dict[int, list[float]] = {s: [] for s in sizes}
    ours: dict[int, list[float]] = {s: [] for s in sizes}
    started = time.monotonic()
    for _ in range(args.rounds):
        for size, bw in bare_round(sizes, args.ranks, args.warmup, args.iters).items():
            bare[size].append(bw)
        for size, bw in worker_round(args.sizes, args.ranks, args.warmup, args.iters).items():
            ours[size].append(bw)
    print(f"# {args.ranks} ranks, {args.rounds} rounds, median busbw GB/s "
          f"({time.monotonic() - started:.0f} s)")
    print(f"{'size':>10} {'bare':>9} {'worker':>9} {'overhead':>9}")
    overheads = []
    for size in sizes:
        b, w = statistics.median(bare[size]), statistics.median(ours[size])
        overheads.append(1 - w / b)
        print(f"{size:>10} {b:>9.3f} {w:>9.3f} {100 * (1 - w / b):>8.1f}%")
    print(f"median overhead: {100 * statistics.median(overheads):.1f}% (target <= 5%)")


if __name__ == "__main__":
    main()
