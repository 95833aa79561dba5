"""Burn-in worker: one rank of an all-reduce bandwidth sweep. Run as a subprocess, never in the
daemon: `python -m agent.burnin.worker --sizes 1M,16M --iters 20 --result-file F`.

Rendezvous comes from the standard torch env (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Backend NCCL on CUDA, gloo on CPU — the same code path. For each size: warm-up
iterations, timed iterations (time = max over ranks of the mean per-iteration time, as the
slowest rank bounds a collective), then one correctness pass like nccl-tests' `#wrong`: every
rank fills its buffer with rank+1, so each element must equal n(n+1)/2 after the sum.
Local rank 0 writes the result JSON (every rank knows the group's numbers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.burnin.spec import BurnInResult, SizeResult, bandwidths
from gpufleet_common.sizes import parse_sizes


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agent.burnin.worker")
    parser.add_argument("--sizes", default="1M,4M,16M,64M", help="comma list or MIN:MAX")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--backend", default="auto", choices=["auto", "nccl", "gloo"])
    parser.add_argument("--result-file", type=Path, required=True)
    parser.add_argument(
        "--slowdown", type=float, default=1.0,
        help="test knob: make this rank's collectives this many times slower (>= 1)",
    )
    parser.add_argument("--hang", action="store_true", help="test knob: never finish")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available() and args.backend != "gloo"
    backend = "nccl" if cuda else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    started = time.monotonic()
    dist.init_process_group(backend=backend)
    if args.hang:
        while True:
            time.sleep(1)
    world, rank = dist.get_world_size(), dist.get_rank()
    sync: Callable[[], None] = torch.cuda.synchronize if cuda else (lambda: None)
    rows = [
        _measure(torch, dist, size, args, world, rank, device, sync)
        for size in parse_sizes(args.sizes)
    ]
    nccl_version = ".".join(map(str, torch.cuda.nccl.version())) if cuda else ""  # type: ignore[no-untyped-call]
    result = BurnInResult(
        backend=backend, world_size=world, sizes=tuple(rows),
        duration_s=time.monotonic() - started, nccl_version=nccl_version,
    )
    if local_rank == 0:
        tmp = args.result_file.with_suffix(".tmp")
        tmp.write_text(result.to_json())
        os.replace(tmp, args.result_file)
    dist.destroy_process_group()
    return 0


def _measure(
    torch: Any, dist: Any, size: int, args: argparse.Namespace, world: int, rank: int,
    device: Any, sync: Callable[[], None],
) -> SizeResult:
    """Time one size and check the reduction's correctness."""
    count = max(1, size // 4)
    buf = torch.zeros(count, dtype=torch.float32, device=device)
    for _ in range(args.warmup):
        dist.all_reduce(buf)
    sync()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.iters):
        dist.all_reduce(buf)
    sync()
    total = time.perf_counter() - t0
    if args.slowdown > 1.0:  # test knob: a slow node, seen by the whole group like a real one
        time.sleep(total * (args.slowdown - 1.0))
        total *= args.slowdown
    mean = torch.tensor([total / max(1, args.iters)], dtype=torch.float64, device=device)
    dist.all_reduce(mean, op=dist.ReduceOp.MAX)
    seconds = float(mean.item())
    buf.fill_(float(rank + 1))
    dist.all_reduce(buf)
    sync()
    expected = world * (world + 1) / 2
    wrong = torch.tensor([int((buf != expected).sum().item())], device=device)
    dist.all_reduce(wrong)
    algbw, busbw = bandwidths(count * 4, seconds, world)
    return SizeResult(
        bytes=count * 4, time_us=seconds * 1e6, algbw_gbps=algbw, busbw_gbps=busbw,
        wrong=int(wrong.item()),
    )


if __name__ == "__main__":
    sys.exit(main())
