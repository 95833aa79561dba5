"""Which checkpoint a restarted run resumes from, read from the shared checkpoint directory.

The layout contract (shared with examples/deepseek_v3_mini/checkpoint.py, which writes it): a
checkpoint is complete iff `<dir>/step_<NNNNNNNN>/COMPLETE` exists; the latest complete one is
the highest step with that marker. The controller only reads it, for the run's timeline and
ledger — the ranks resume from it by themselves.
"""

from __future__ import annotations

import re
from pathlib import Path

_STEP_DIR = re.compile(r"^step_(\d{8})$")


def latest_complete_step(ckpt_dir: str | Path) -> int | None:
    """Highest step with a COMPLETE marker, or None (no directory, none complete)."""
    root = Path(ckpt_dir)
    try:
        entries = list(root.iterdir())
    except OSError:
        return None
    steps = [int(m.group(1)) for e in entries if (m := _STEP_DIR.match(e.name))
             and (e / "COMPLETE").is_file()]
    return max(steps, default=None)
