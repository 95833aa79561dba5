"""Train DeepSeek-V3-mini with torch.distributed; resumable, checkpointed, observable.

Launch one process per rank from the repository root, with the standard environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) set by whoever starts the ranks::

    python -m examples.deepseek_v3_mini.train --steps 100 --ckpt-dir D --ckpt-every 10 --seed 0

Backend: NCCL when CUDA is available, gloo otherwise (same code path). The run resumes from the
latest complete checkpoint in D. Rank 0 prints one JSON line per step on stdout,
`{"step": int, "loss": float, "step_time_s": float}` (loss = the mean language-model loss over
ranks, at full float precision); events (start, checkpoint, fault, done) go to stderr as JSON
lines with an "event" key. Every rank reports progress through `agent.ranks.reporter` when the
agent set GPUFLEET_PROGRESS_SOCKET.

Exit codes: 0 reached --steps; 2 bad flags, launch environment or checkpoint; 17 injected
failure; 18 injected hang outlived --hang-max-s; 1 anything else (e.g. a peer died).
This launcher makes its own store per launch, so the torchrun shared-store restart bug does not
apply; under torchrun set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from agent.ranks.reporter import ProgressReporter, ReporterConfigError
from examples.deepseek_v3_mini import checkpoint as layout, state
from examples.deepseek_v3_mini.config import ConfigError, ModelConfig
from examples.deepseek_v3_mini.data import SyntheticMarkovData, derive_seed
from examples.deepseek_v3_mini.faults import FaultPlan
from examples.deepseek_v3_mini.model import Transformer
from examples.deepseek_v3_mini.moe import local_dispatch
from examples.deepseek_v3_mini.parallel import (
    AllToAllDispatch,
    LaunchEnv,
    LaunchError,
    Parallel,
    clip_grad_norm,
    init_parallel,
    local_expert_range,
    sync_gradients,
)

EXIT_USAGE = 2


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux), so launch costs include the interpreter."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            start_ticks = int(fh.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime", "rb") as fh:
            uptime = float(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 3)


def emit(event: str, **fields: Any) -> None:
    """One JSON event line on stderr."""
    print(json.dumps({"event": event, **fields, "ts": time.time()}), file=sys.stderr, flush=True)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m examples.deepseek_v3_mini.train")
    p.add_argument("--steps", type=_positive, required=True, help="train until this step")
    p.add_argument("--ckpt-dir", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--ckpt-every", type=_non_negative, default=10, help="0: never checkpoint")
    p.add_argument("--keep", type=_positive, default=3, help="complete checkpoints to keep")
    p.add_argument("--seed", type=_non_negative, default=0)
    p.add_argument("--batch-size", type=_positive, default=4, help="sequences per rank per step")
    p.add_argument("--seq-len", type=_positive, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dropout", type=float, default=0.0, help="> 0 exercises RNG restore")
    p.add_argument("--ep-size", type=_positive, default=1, help="expert-parallel group size")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--pg-timeout-s", type=float, default=300.0, help="collective timeout")
    p.add_argument("--min-step-s", type=_non_negative_float, default=0.0,
                   help="pad every step to at least this long (a bigger model's pace, for "
                        "tests and demos that need time between steps)")
    faults = p.add_argument_group("fault injection (tests)")
    faults.add_argument("--fail-at-step", type=_positive, help="--fail-rank exits 17 here")
    faults.add_argument("--hang-at-step", type=_positive, help="--fail-rank sleeps here")
    faults.add_argument("--fail-in-save-at-step", type=_positive, help="exit 17 mid-checkpoint")
    faults.add_argument("--fail-rank", type=_non_negative, default=0)
    faults.add_argument("--fault-mode", choices=("once", "always"), default="once")
    faults.add_argument("--hang-max-s", type=float, default=600.0)
    return p


def _check_args(args: argparse.Namespace, env: LaunchEnv, cfg: ModelConfig) -> None:
    problems = []
    if args.fail_rank >= env.world_size:
        problems.append(f"--fail-rank {args.fail_rank} >= world size {env.world_size}")
    if args.seq_len > cfg.max_seq_len:
        problems.append(f"--seq-len {args.seq_len} > max_seq_len {cfg.max_seq_len}")
    if not (args.lr > 0 and args.pg_timeout_s > 0 and args.hang_max_s >= 0):
        problems.append("--lr and --pg-timeout-s must be > 0, --hang-max-s >= 0")
    if args.ckpt_dir.exists() and not args.ckpt_dir.is_dir():
        problems.append(f"--ckpt-dir {args.ckpt_dir} is not a directory")
    if problems:
        raise LaunchError("; ".join(problems))


def _resume_point(ckpt_dir: Path, par: Parallel) -> int:
    """Rank 0 picks the latest complete checkpoint and tells everyone (0: start fresh)."""
    found = layout.latest_complete_checkpoint(ckpt_dir) if par.env.rank == 0 else None
    step = torch.tensor([found[0] if found else 0], dtype=torch.long, device=par.device)
    dist.broadcast(step, src=0)
    return int(step.item())


def train_step(
    model: Transformer, optimizer: torch.optim.Optimizer, par: Parallel, tokens: torch.Tensor
) -> float:
    """One optimizer step on this rank's batch; returns the language-model loss averaged over
    ranks. The loss and the experts' token counts ride along the gradient all-reduce, and the
    global counts drive the routing-bias update (the same on every rank)."""
    named = list(model.named_parameters())
    moe = model.moe_layers()
    optimizer.zero_grad(set_to_none=True)
    total, lm = model.loss(tokens)
    total.backward()  # type: ignore[no-untyped-call]
    loads = [m.last_load.float() for m in moe if m.last_load is not None]
    extra = torch.cat([lm.view(1), *[load.flatten() for load in loads]])
    summed = sync_gradients(named, par, extra)
    clip_grad_norm(named, par, 1.0)
    optimizer.step()
    if moe and model.cfg.bias_update_speed > 0:
        for layer, load in zip(moe, summed[1:].view(len(moe), -1), strict=True):
            layer.gate.update_bias(load)
    return float(summed[0]) / par.env.world_size


def train(args: argparse.Namespace, env: LaunchEnv, cfg: ModelConfig) -> int:
    """The training loop proper; returns the exit code."""
    t_init = time.perf_counter()
    par = init_parallel(env, args.ep_size, args.pg_timeout_s, args.device)
    init_pg_s = time.perf_counter() - t_init
    local = local_expert_range(cfg.n_routed_experts, par.ep_size, par.ep_rank)
    dispatch = (
        AllToAllDispatch(par.ep_group, par.ep_size, local) if par.ep_size > 1 else local_dispatch
    )
    torch.manual_seed(args.seed)  # identical initial weights on every rank
    model = Transformer(cfg, local, dispatch).to(par.device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1
    )
    config_json = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    resume = _resume_point(args.ckpt_dir, par)
    restored = None
    if resume:
        restored = state.load(
            layout.step_dir(args.ckpt_dir, resume),
            model,
            optimizer,
            par,
            seed=args.seed,
            config_json=config_json,
        )
    if restored is None or not restored.rng_restored:
        torch.manual_seed(derive_seed(args.seed, "rank-rng", env.rank, resume))
        random.seed(derive_seed(args.seed, "rank-py-rng", env.rank, resume))
    data = SyntheticMarkovData(args.seed, cfg.vocab_size, args.batch_size, args.seq_len)
    reporter = ProgressReporter.from_env()
    faults = FaultPlan(
        args.ckpt_dir,
        args.fail_rank,
        args.fail_at_step,
        args.hang_at_step,
        args.fail_in_save_at_step,
        args.fault_mode,
        args.hang_max_s,
    )
    emit(
        "start",
        rank=env.rank,
        world_size=env.world_size,
        ep_size=par.ep_size,
        backend=par.backend,
        device=str(par.device),
        resumed_from=resume or None,
        rng_restored=bool(restored and restored.rng_restored),
        init_pg_s=round(init_pg_s, 4),
        load_s=round(restored.load_s, 4) if restored else None,
        process_age_s=_process_age_s(),
    )
    model.train()
    for step in range(resume + 1, args.steps + 1):
        faults.before_step(step, env.rank)
        t0 = time.perf_counter()
        tokens = data.batch(step, env.rank).to(par.device)
        loss = train_step(model, optimizer, par, tokens)
        if args.min_step_s:
            time.sleep(max(0.0, args.min_step_s - (time.perf_counter() - t0)))
        step_time = time.perf_counter() - t0
        if env.rank == 0:
            line = {"step": step, "loss": loss, "step_time_s": round(step_time, 6)}
            print(json.dumps(line), flush=True)
        reporter.report(step, loss, step_time, data.tokens_per_batch)
        if args.ckpt_every and step % args.ckpt_every == 0:
            save_s = state.save(
                args.ckpt_dir,
                step,
                model,
                optimizer,
                par,
                seed=args.seed,
                config_json=config_json,
                keep=args.keep,
                after_write=functools.partial(faults.in_save, step, env.rank),
            )
            if env.rank == 0:
                emit("checkpoint", rank=0, step=step, save_s=round(save_s, 4))
    emit("done", rank=env.rank, step=args.steps, process_age_s=_process_age_s())
    reporter.close()
    dist.destroy_process_group()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, validate, train; returns the process exit code."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    try:
        cfg = ModelConfig(dropout=args.dropout)
        env = LaunchEnv.from_env(os.environ)
        _check_args(args, env, cfg)
        ProgressReporter.from_env()  # fail early on a malformed reporting environment
        return train(args, env, cfg)
    except (LaunchError, ConfigError, ReporterConfigError, state.CheckpointMismatch) as exc:
        print(f"deepseek_v3_mini.train: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except layout.CheckpointLayoutError as exc:
        print(f"deepseek_v3_mini.train: checkpoint: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
