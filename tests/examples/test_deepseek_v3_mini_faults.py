"""Injected faults fire once per checkpoint directory (or every time in "always" mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_step(ckpt: Path, step: int, rank: int, mode: str = "once", kind: str = "fail") -> int:
    """Exit code of a process that reaches `step` as `rank` under a plan for rank 1, step 5."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from examples.deepseek_v3_mini.faults import FaultPlan\n"
        f"plan = FaultPlan(Path(sys.argv[1]), rank=1, {kind}_at_step=5, mode={mode!r},"
        " hang_max_s=0.2)\n"
        f"plan.{'in_save' if kind == 'fail_in_save' else 'before_step'}({step}, {rank})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(ckpt)], cwd=REPO_ROOT, env=env, timeout=30,
        capture_output=True, text=True,
    )  # fmt: skip
    return proc.returncode


@pytest.mark.parametrize("kind", ["fail", "fail_in_save"])
def test_fault_fires_once_then_a_restart_goes_through(tmp_path: Path, kind: str) -> None:
    assert run_step(tmp_path, 4, 1, kind=kind) == 0  # not the step
    assert run_step(tmp_path, 5, 0, kind=kind) == 0  # not the rank
    assert run_step(tmp_path, 5, 1, kind=kind) == 17
    markers = list((tmp_path / "injected_faults").iterdir())
    assert [m.name for m in markers] == [f"{kind}_step00000005_rank1"]
    assert run_step(tmp_path, 5, 1, kind=kind) == 0  # the restarted attempt passes


def test_always_mode_fires_on_every_attempt(tmp_path: Path) -> None:
    assert run_step(tmp_path, 5, 1, mode="always") == 17
    assert run_step(tmp_path, 5, 1, mode="always") == 17


def test_a_hang_outliving_its_bound_exits_18(tmp_path: Path) -> None:
    assert run_step(tmp_path, 5, 1, kind="hang") == 18
    assert run_step(tmp_path, 5, 1, kind="hang") == 0
