"""Checkpoint directory layout of the DeepSeek-V3-mini run (stdlib only, no torch).

Layout under a run's checkpoint directory::

    <ckpt-dir>/
      step_00000010/          # the state after optimizer step 10 (torch.distributed.checkpoint)
        .metadata
        __0_0.distcp  __1_0.distcp  ...
        COMPLETE              # JSON, written last: the checkpoint is complete
      step_00000020/          # being written: no COMPLETE yet, so it does not count
      injected_faults/        # one-shot fault markers of the test flags (not a checkpoint)

The contract others rely on: **a checkpoint is complete iff `step_<NNNNNNNN>/COMPLETE` exists**
(eight decimal digits, the number of optimizer steps done). Rank 0 writes `COMPLETE` only after
every rank finished saving (a barrier), to a temporary name that is fsynced and then
`os.replace`d, so a crash at any moment leaves either no marker or a whole one. Whoever deletes a
checkpoint removes `COMPLETE` first, so a half-deleted directory is never taken as complete.

The supervisor reads this layout with `latest_complete_checkpoint`; the trainer uses the rest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEP_DIR_PREFIX = "step_"
STEP_DIGITS = 8
COMPLETE_MARKER = "COMPLETE"
MAX_STEP = 10**STEP_DIGITS - 1
_STEP_DIR_RE = re.compile(r"^step_(\d{8})$")


class CheckpointLayoutError(ValueError):
    """A checkpoint directory, step or marker that does not fit the layout."""


@dataclass(frozen=True, slots=True)
class CheckpointEntry:
    """One `step_NNNNNNNN` directory and whether it is complete."""

    step: int
    path: Path
    complete: bool


def step_dir_name(step: int) -> str:
    """`step_00000010` for step 10."""
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
        raise CheckpointLayoutError(f"checkpoint step must be an int in [0, {MAX_STEP}]: {step!r}")
    return f"{STEP_DIR_PREFIX}{step:0{STEP_DIGITS}d}"


def step_dir(ckpt_dir: str | os.PathLike[str], step: int) -> Path:
    """The directory of the checkpoint taken after `step` optimizer steps."""
    return Path(ckpt_dir) / step_dir_name(step)


def parse_step_dir_name(name: str) -> int | None:
    """The step of a `step_NNNNNNNN` directory name, or None for any other name."""
    match = _STEP_DIR_RE.match(name)
    return int(match.group(1)) if match else None


def is_complete(path: str | os.PathLike[str]) -> bool:
    """True when the checkpoint directory holds its `COMPLETE` marker (a regular file)."""
    marker = Path(path) / COMPLETE_MARKER
    return marker.is_file() and not marker.is_symlink()


def list_checkpoints(ckpt_dir: str | os.PathLike[str]) -> list[CheckpointEntry]:
    """Every `step_*` directory under `ckpt_dir`, oldest first; empty when the dir is absent."""
    root = Path(ckpt_dir)
    try:
        children = list(root.iterdir())
    except FileNotFoundError:
        return []
    entries = []
    for child in children:
        step = parse_step_dir_name(child.name)
        if step is None or child.is_symlink() or not child.is_dir():
            continue
        entries.append(CheckpointEntry(step=step, path=child, complete=is_complete(child)))
    entries.sort(key=lambda e: e.step)
    return entries


def latest_complete_checkpoint(ckpt_dir: str | os.PathLike[str]) -> tuple[int, Path] | None:
    """(step, path) of the newest complete checkpoint under `ckpt_dir`, or None if there is none."""
    complete = [e for e in list_checkpoints(ckpt_dir) if e.complete]
    if not complete:
        return None
    newest = complete[-1]
    return newest.step, newest.path


def read_complete_marker(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in a checkpoint's `COMPLETE` marker (raises CheckpointLayoutError)."""
    marker = Path(path) / COMPLETE_MARKER
    try:
        with marker.open("rb") as fh:
            raw = fh.read(65_537)
    except OSError as exc:
        raise CheckpointLayoutError(f"cannot read {marker}: {exc}") from exc
    if len(raw) > 65_536:
        raise CheckpointLayoutError(f"{marker} is larger than 64 KiB")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointLayoutError(f"{marker} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointLayoutError(f"{marker} holds {type(data).__name__}, not an object")
    return data


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_complete_marker(path: str | os.PathLike[str], info: dict[str, Any]) -> Path:
    """Atomically mark the checkpoint at `path` complete with `info` (JSON-serialisable)."""
    directory = Path(path)
    step = parse_step_dir_name(directory.name)
    if step is None:
        raise CheckpointLayoutError(f"not a step_NNNNNNNN directory: {directory}")
    if not directory.is_dir():
        raise CheckpointLayoutError(f"checkpoint directory does not exist: {directory}")
    body = json.dumps({**info, "step": step}, sort_keys=True).encode()
    tmp = directory / f".{COMPLETE_MARKER}.tmp.{os.getpid()}"
    with tmp.open("wb") as fh:
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    final = directory / COMPLETE_MARKER
    os.replace(tmp, final)
    _fsync_dir(directory)
    return final


def remove_checkpoint(path: str | os.PathLike[str]) -> None:
    """Delete one checkpoint directory, its `COMPLETE` marker first (so no half state counts)."""
    directory = Path(path)
    if parse_step_dir_name(directory.name) is None or directory.is_symlink():
        raise CheckpointLayoutError(f"refusing to delete a non-checkpoint path: {directory}")
    marker = directory / COMPLETE_MARKER
    if not directory.is_dir():
        raise CheckpointLayoutError(f"not a checkpoint directory: {directory}")
    marker.unlink(missing_ok=True)
    _fsync_dir(directory)
    shutil.rmtree(directory)


def prepare_step_dir(ckpt_dir: str | os.PathLike[str], step: int) -> Path:
    """An empty directory for the checkpoint of `step`, wiping leftovers of an earlier crash."""
    path = step_dir(ckpt_dir, step)
    if path.exists() or path.is_symlink():
        remove_checkpoint(path)
    path.mkdir(parents=True)
    return path


def retention_victims(ckpt_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """What retention may delete: complete checkpoints beyond the newest `keep`, and incomplete
    ones older than the newest complete one (crash leftovers). An incomplete checkpoint newer than
    every complete one may be being written, so it is never a victim; with no complete
    checkpoint nothing is."""
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise CheckpointLayoutError(f"keep must be an int >= 1: {keep!r}")
    entries = list_checkpoints(ckpt_dir)
    complete = [e for e in entries if e.complete]
    if not complete:
        return []
    newest_complete = complete[-1].step
    kept = {e.step for e in complete[-keep:]}
    return [
        e.path
        for e in entries
        if (e.complete and e.step not in kept) or (not e.complete and e.step < newest_complete)
    ]


def apply_retention(ckpt_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete `retention_victims(ckpt_dir, keep)`, oldest first; returns what was deleted."""
    victims = retention_victims(ckpt_dir, keep)
    for victim in victims:
        remove_checkpoint(victim)
    return victims
