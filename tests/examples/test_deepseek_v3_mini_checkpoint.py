"""The checkpoint layout contract (stdlib only): complete iff COMPLETE exists; safe retention."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from examples.deepseek_v3_mini.checkpoint import (
    COMPLETE_MARKER,
    CheckpointLayoutError,
    apply_retention,
    latest_complete_checkpoint,
    list_checkpoints,
    parse_step_dir_name,
    prepare_step_dir,
    read_complete_marker,
    remove_checkpoint,
    retention_victims,
    step_dir,
    step_dir_name,
    write_complete_marker,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def make(ckpt: Path, step: int, *, complete: bool) -> Path:
    path = step_dir(ckpt, step)
    path.mkdir(parents=True)
    (path / "__0_0.distcp").write_bytes(b"data")
    if complete:
        write_complete_marker(path, {"world_size": 2})
    return path


def test_step_names_round_trip_and_reject_junk() -> None:
    assert step_dir_name(10) == "step_00000010"
    assert parse_step_dir_name("step_00000010") == 10
    for bad in ("step_10", "step_000000010", "step_0000001a", "step_00000010.tmp", "x"):
        assert parse_step_dir_name(bad) is None
    for bad_step in (-1, 10**8, True, 1.5):
        with pytest.raises(CheckpointLayoutError):
            step_dir_name(bad_step)  # type: ignore[arg-type]


def test_latest_is_the_newest_complete_one(tmp_path: Path) -> None:
    assert latest_complete_checkpoint(tmp_path / "absent") is None
    assert latest_complete_checkpoint(tmp_path) is None
    make(tmp_path, 5, complete=True)
    ten = make(tmp_path, 10, complete=True)
    make(tmp_path, 15, complete=False)  # being written, or torn by a crash
    assert latest_complete_checkpoint(tmp_path) == (10, ten)


def test_only_a_real_marker_counts(tmp_path: Path) -> None:
    torn = make(tmp_path, 20, complete=False)
    (torn / f".{COMPLETE_MARKER}.tmp.999").write_text('{"step": 20}')  # crash before replace
    fake = make(tmp_path, 30, complete=False)
    (fake / COMPLETE_MARKER).mkdir()  # a directory is not a marker
    linked = make(tmp_path, 40, complete=False)
    (tmp_path / "elsewhere").write_text("{}")
    (linked / COMPLETE_MARKER).symlink_to(tmp_path / "elsewhere")  # must be a regular file
    (tmp_path / "step_00000050").write_text("a file, not a checkpoint")
    (tmp_path / "injected_faults").mkdir()
    assert latest_complete_checkpoint(tmp_path) is None
    assert [(e.step, e.complete) for e in list_checkpoints(tmp_path)] == [
        (20, False), (30, False), (40, False),
    ]  # fmt: skip


def test_marker_is_written_atomically_with_its_step(tmp_path: Path) -> None:
    path = make(tmp_path, 7, complete=False)
    final = write_complete_marker(path, {"world_size": 4, "step": 999})
    assert final == path / COMPLETE_MARKER
    assert json.loads(final.read_text()) == {"step": 7, "world_size": 4}
    assert sorted(p.name for p in path.iterdir()) == [COMPLETE_MARKER, "__0_0.distcp"]
    assert read_complete_marker(path)["step"] == 7
    with pytest.raises(CheckpointLayoutError, match="not a step_"):
        write_complete_marker(tmp_path, {})
    with pytest.raises(CheckpointLayoutError, match="does not exist"):
        write_complete_marker(step_dir(tmp_path, 8), {})


@pytest.mark.parametrize(
    ("body", "match"),
    [(b"{not json", "not JSON"), (b"[1]", "not an object"), (b" " * 70_000, "64 KiB")],
)
def test_bad_markers_are_reported(tmp_path: Path, body: bytes, match: str) -> None:
    path = make(tmp_path, 3, complete=False)
    (path / COMPLETE_MARKER).write_bytes(body)
    with pytest.raises(CheckpointLayoutError, match=match):
        read_complete_marker(path)


def test_prepare_wipes_crash_leftovers_and_remove_refuses_other_paths(tmp_path: Path) -> None:
    stale = make(tmp_path, 6, complete=True)
    (stale / "__7_0.distcp").write_bytes(b"from a bigger world")
    fresh = prepare_step_dir(tmp_path, 6)
    assert fresh == stale and list(fresh.iterdir()) == []
    other = tmp_path / "precious"
    other.mkdir()
    with pytest.raises(CheckpointLayoutError, match="refusing"):
        remove_checkpoint(other)
    assert other.is_dir()
    link = tmp_path / "step_00000009"
    link.symlink_to(other)
    with pytest.raises(CheckpointLayoutError, match="refusing"):
        remove_checkpoint(link)
    assert other.is_dir()


def test_retention_never_touches_a_newer_checkpoint_in_progress(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        make(tmp_path, step, complete=True)
    make(tmp_path, 3, complete=False)  # torn by an old crash
    make(tmp_path, 10, complete=False)  # being written right now
    victims = retention_victims(tmp_path, keep=2)
    assert [parse_step_dir_name(v.name) for v in victims] == [2, 3, 4]
    assert apply_retention(tmp_path, keep=2) == victims
    assert [(e.step, e.complete) for e in list_checkpoints(tmp_path)] == [
        (6, True), (8, True), (10, False),
    ]  # fmt: skip
    assert apply_retention(tmp_path, keep=2) == []


def test_retention_without_a_complete_checkpoint_deletes_nothing(tmp_path: Path) -> None:
    make(tmp_path, 1, complete=False)
    make(tmp_path, 2, complete=False)
    assert retention_victims(tmp_path, keep=1) == []
    for bad in (0, -1, True):
        with pytest.raises(CheckpointLayoutError, match="keep"):
            retention_victims(tmp_path, keep=bad)


def test_layout_module_does_not_import_torch() -> None:
    code = (
        "import sys\nimport examples.deepseek_v3_mini.checkpoint\nprint('torch' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, timeout=30,
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert out.strip() == "False"
