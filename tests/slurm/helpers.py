"""Shared bits of the Slurm tests: a recording SlurmCommands proxy, job helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from controller.fleet.lifecycle import NodeState
from controller.slurm.commands import SlurmCommands
from controller.slurm.model import SlurmJob, SlurmNode
from controller.slurm.reconcile import FleetNodeView

READY = FleetNodeView(NodeState.READY, "preflight_passed", 101)


class Recording:
    """Passes every call through to `inner` and remembers its name and arguments."""

    def __init__(self, inner: SlurmCommands) -> None:
        self.inner = inner
        self.calls: list[tuple[str, ...]] = []

    def nodes(self) -> list[SlurmNode]:
        self.calls.append(("nodes",))
        return self.inner.nodes()

    def drain(self, node: str, reason: str) -> None:
        self.calls.append(("drain", node, reason))
        self.inner.drain(node, reason)

    def resume(self, node: str) -> None:
        self.calls.append(("resume", node))
        self.inner.resume(node)

    def submit(self, script: Path) -> str:
        self.calls.append(("submit", str(script)))
        return self.inner.submit(script)

    def job(self, job_id: str) -> SlurmJob:
        self.calls.append(("job", job_id))
        return self.inner.job(job_id)

    def queue(self) -> list[SlurmJob]:
        self.calls.append(("queue",))
        return self.inner.queue()

    def cancel(self, job_id: str) -> None:
        self.calls.append(("cancel", job_id))
        self.inner.cancel(job_id)


def write_job(path: Path, body: str, *sbatch: str) -> Path:
    """A batch script with `#SBATCH` options and `body`."""
    options = "".join(f"#SBATCH {opt}\n" for opt in sbatch)
    path.write_text(f"#!/bin/bash\n{options}{body}\n")
    return path


def wait_job(commands: SlurmCommands, job_id: str, timeout_s: float = 30.0) -> SlurmJob:
    """Poll until the job ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        job = commands.job(job_id)
        if job.terminal:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job} after {timeout_s} s"
        time.sleep(0.2)


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` on the event loop until it holds; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")
