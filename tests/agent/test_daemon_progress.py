"""`gpufleet-agent run` keeps a standing progress socket: a rank it never started (as a Slurm
job's ranks are) reports there and its steps reach the controller as RankProgress events, exactly
like those of the agent's own ranks; invalid reports do not. A real agent process, a real
controller on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.cli import app
from agent.ranks.reporter import ProgressReporter
from agent.run_command import RunOptions, progress_socket_path
from controller.server.service import Delivered
from protos.gpufleet.v1 import fleet_pb2
from tests.agent.test_rank_progress import encode, valid_record
from tests.controller.conftest import settings, start_controller

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gfd-"))  # unix socket paths have 107 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _options(**kw: object) -> RunOptions:
    base: dict[str, object] = dict(
        controller=None, node=None, metrics_listen="127.0.0.1:0", spool=None, simulate=None,
        interval_s=1.0, tls_cert=None, tls_key=None, tls_ca=None, insecure=False,
        state_dir=None, workdir=None)
    return RunOptions(**(base | kw))  # type: ignore[arg-type]


def test_the_socket_path_is_the_flag_else_the_runtime_directory_else_the_state_dir() -> None:
    state = Path("/var/lib/gpufleet-agent")
    flag = Path("/srv/agent.sock")
    assert progress_socket_path(_options(progress_socket=flag), state,
                                {"RUNTIME_DIRECTORY": "/run/x"}) == flag
    assert progress_socket_path(_options(), state, {"RUNTIME_DIRECTORY": "/run/a:/run/b"}) \
        == Path("/run/a/progress.sock")
    assert progress_socket_path(_options(), state, {}) == state / "progress.sock"


def test_run_refuses_a_relative_socket_and_an_unknown_group() -> None:
    result = CliRunner().invoke(app, [
        "run", "--simulate", "h100_sxm", "--progress-socket", "rel/p.sock",
        "--progress-socket-group", "no-such-group-gpufleet"])
    assert result.exit_code == 2
    assert "--progress-socket must be an absolute path" in result.output
    assert "no such group 'no-such-group-gpufleet'" in result.output


async def test_a_foreign_ranks_progress_reaches_the_controller(short_dir: Path) -> None:
    controller = await start_controller(settings(short_dir / "fleet.db"))
    service = controller.service
    assert service is not None
    seen: list[tuple[str, fleet_pb2.RankProgress]] = []

    def on_delivered(d: Delivered) -> None:
        if d.msg.WhichOneof("body") == "event" and d.msg.event.WhichOneof("kind") == "progress":
            seen.append((d.node, d.msg.event.progress))

    service.add_listener(on_delivered)
    path = short_dir / "run" / "progress.sock"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--controller", controller.address, "--insecure",
         "--simulate", "h100_sxm", "--node", "node-p", "--metrics-listen", "127.0.0.1:0",
         "--interval", "5", "--state-dir", str(short_dir / "state"),
         "--progress-socket", str(path)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "RUNTIME_DIRECTORY"})
    reporter = ProgressReporter(str(path), run_id="slurm-run", attempt=2, rank=3, local_rank=1)
    try:
        deadline = time.monotonic() + 60
        while not seen:  # progress is ephemeral: it flows once the agent is connected
            assert time.monotonic() < deadline, "no progress reached the controller"
            assert agent.poll() is None, agent.stderr.read() if agent.stderr else ""
            if path.exists():
                reporter.report(0, 9.0, 0.5, 1)  # step 0 until the agent is connected
            await asyncio.sleep(0.2)
        assert (path.stat().st_mode & 0o777) == 0o660
        before = len(seen)
        bad = [encode(valid_record(run_id="run\u00e9", step=77)), b"{not json",
               encode(valid_record(run_id="slurm-run", step=-1))]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            for payload in bad:
                sender.sendto(payload, str(path))
        reporter.report(42, 1.25, 0.75, 640)
        while not any(p.step == 42 for _, p in seen):
            assert time.monotonic() < deadline, "step 42 never reached the controller"
            await asyncio.sleep(0.1)
    finally:
        reporter.close()
        agent.terminate()
        agent.wait(15)
        await controller.stop(grace_s=0)
    after = [p.step for _, p in seen[before:] if p.step != 0]  # step 0: late connect probes
    assert after == [42]  # the three bad datagrams sent before it were dropped
    node, last = seen[-1]
    assert node == "node-p"
    assert (last.run_id, last.attempt, last.rank, last.loss, last.tokens) == (
        "slurm-run", 2, 3, 1.25, 640)
    assert last.step_time_s == 0.75
    assert agent.returncode == 0 and not path.exists()
