"""Injected faults for supervisor tests: a rank that dies, hangs, or dies while checkpointing.

By default a fault fires once per checkpoint directory: when it fires it leaves a marker in
`<ckpt-dir>/injected_faults/`, and a restarted run (resumed from any checkpoint, or from
scratch) finds the marker and goes through. With mode "always" it fires on every attempt that
reaches the step, which models a deterministic bug that no restart can fix.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXIT_INJECTED_FAILURE = 17
EXIT_HANG_EXPIRED = 18
FAULT_DIR = "injected_faults"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """Which rank misbehaves, how, and at which step (None: never)."""

    ckpt_dir: Path
    rank: int
    fail_at_step: int | None = None
    hang_at_step: int | None = None
    fail_in_save_at_step: int | None = None
    mode: str = "once"  # "once" | "always"
    hang_max_s: float = 600.0

    def _marker(self, kind: str, step: int) -> Path:
        return self.ckpt_dir / FAULT_DIR / f"{kind}_step{step:08d}_rank{self.rank}"

    def _armed(self, kind: str, planned: int | None, step: int, rank: int) -> bool:
        if planned is None or planned != step or rank != self.rank:
            return False
        return self.mode == "always" or not self._marker(kind, step).exists()

    def _fire(self, kind: str, step: int) -> None:
        marker = self._marker(kind, step)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"kind": kind, "step": step, "pid": os.getpid()}))
        event = {"event": "fault", "kind": kind, "step": step, "rank": self.rank}
        print(json.dumps(event), file=sys.stderr, flush=True)
        sys.stdout.flush()

    def before_step(self, step: int, rank: int) -> None:
        """Die (exit 17) or hang (sleep, then exit 18) if planned for this step and rank."""
        if self._armed("fail", self.fail_at_step, step, rank):
            self._fire("fail", step)
            os._exit(EXIT_INJECTED_FAILURE)
        if self._armed("hang", self.hang_at_step, step, rank):
            self._fire("hang", step)
            deadline = time.monotonic() + self.hang_max_s
            while time.monotonic() < deadline:  # alive, holding its place, doing nothing
                time.sleep(min(1.0, max(deadline - time.monotonic(), 0.0)))
            os._exit(EXIT_HANG_EXPIRED)

    def in_save(self, step: int, rank: int) -> None:
        """Die (exit 17) after this rank's checkpoint data is written, before it is complete."""
        if self._armed("fail_in_save", self.fail_in_save_at_step, step, rank):
            self._fire("fail_in_save", step)
            os._exit(EXIT_INJECTED_FAILURE)
