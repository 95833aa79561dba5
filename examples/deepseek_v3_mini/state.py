"""Saving and restoring the training state with torch.distributed.checkpoint (DCP).

A checkpoint holds the model (every rank's expert shard under global expert ids, replicated
tensors de-duplicated by DCP), the optimizer, the train position (step = data position, seed,
model config) and each rank's RNG states (torch, python `random`, CUDA when used) under a
rank-specific key. The directory layout and the COMPLETE protocol are in `checkpoint.py`.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from examples.deepseek_v3_mini import checkpoint as layout
from examples.deepseek_v3_mini.parallel import Parallel

FORMAT = "torch.distributed.checkpoint"


class CheckpointMismatch(RuntimeError):
    """The checkpoint was written by a run with another seed or model shape."""


@dataclass(frozen=True, slots=True)
class Restored:
    """What a load brought back."""

    step: int
    path: Path
    rng_restored: bool
    load_s: float


def _rng_state(par: Parallel) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if par.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(par.device)
    return state


def _train_state(step: int, seed: int, config_json: str) -> dict[str, Any]:
    return {"step": step, "seed": seed, "config": config_json}


def save(
    ckpt_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    par: Parallel,
    *,
    seed: int,
    config_json: str,
    keep: int,
    after_write: Callable[[], None] | None = None,
) -> float:
    """Collective: every rank writes its part of step `step`; rank 0 marks it complete after a
    barrier and applies retention. Returns the seconds this rank spent. `after_write` runs once
    the data is on disk, before the barrier (the fault-injection hook)."""
    start = time.perf_counter()
    path = layout.step_dir(ckpt_dir, step)
    if par.env.rank == 0:
        layout.prepare_step_dir(ckpt_dir, step)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {
        "model": model_sd,
        "optim": optim_sd,
        "train": _train_state(step, seed, config_json),
        "rng": {f"rank{par.env.rank}": _rng_state(par)},
    }
    dcp_save(state, checkpoint_id=path)
    if after_write is not None:
        after_write()
    dist.barrier()
    if par.env.rank == 0:
        info = {
            "format": FORMAT,
            "world_size": par.env.world_size,
            "ep_size": par.ep_size,
            "seed": seed,
            "config": json.loads(config_json),
            "saved_at": time.time(),
            "save_s": round(time.perf_counter() - start, 6),
        }
        layout.write_complete_marker(path, info)
        layout.apply_retention(ckpt_dir, keep)
    return time.perf_counter() - start


def _saved_keys(path: Path) -> set[str]:
    metadata = FileSystemReader(str(path)).read_metadata()
    return set(metadata.state_dict_metadata)


def load(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    par: Parallel,
    *,
    seed: int,
    config_json: str,
) -> Restored:
    """Collective: restore model, optimizer, position and this rank's RNG from `path`."""
    start = time.perf_counter()
    info = layout.read_complete_marker(path)
    if info.get("seed") != seed:
        raise CheckpointMismatch(f"{path} was written with --seed {info.get('seed')}, not {seed}")
    if info.get("config") != json.loads(config_json):
        raise CheckpointMismatch(f"{path} was written for another model config")
    model_sd, optim_sd = get_state_dict(model, optimizer)
    rng_key = f"rank{par.env.rank}"
    has_rng = any(k.startswith(f"rng.{rng_key}.") for k in _saved_keys(path))
    state: dict[str, Any] = {
        "model": model_sd,
        "optim": optim_sd,
        "train": _train_state(0, 0, ""),
    }
    if has_rng:
        state["rng"] = {rng_key: _rng_state(par)}
    dcp_load(state, checkpoint_id=path)
    train = state["train"]
    if train["step"] != info["step"]:
        raise CheckpointMismatch(f"{path} holds step {train['step']}, its marker {info['step']}")
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
    if has_rng:
        rng = state["rng"][rng_key]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and par.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], par.device)
    return Restored(int(train["step"]), path, has_rng, time.perf_counter() - start)
