"""A real local fleet: one `gpufleet-controller serve` and one `gpufleet-agent run --simulate`
process per node, all on loopback, started and stopped by PID. The demo and the end-to-end
tests drive it; everything between the processes is the production code path (gRPC streams,
SQLite, directives, rank subprocesses, torch.distributed gloo).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[str]
    log: Path


@dataclass
class LocalFleet:
    """Controller + simulated agents. Use as a context manager."""

    sim_spec: str  # e.g. "gb300:nodes=6,domain_size=3"
    nodes: Sequence[str]
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gpufleet-")))
    interval_s: float = 0.5
    controller_args: Sequence[str] = ()
    columns: int = 160  # width the CLI renders its tables at (its stdout is a pipe here)
    address: str = ""
    procs: list[Proc] = field(default_factory=list)
    inbox: Path = field(init=False)

    def __post_init__(self) -> None:
        self.inbox = self.workdir / "faults.inbox"
        self.inbox.touch()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> LocalFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 30.0) -> None:
        self.address = self._start_controller("controller", "127.0.0.1:0", timeout_s)
        for node in self.nodes:
            self._start_agent(node)
        self.wait_for(lambda: len(self.connected()) == len(self.nodes), timeout_s,
                      "every agent to connect")

    def restart_controller(self, *, kill: bool = True, timeout_s: float = 30.0,
                           while_down: Callable[[], None] | None = None) -> None:
        """Kill -9 (or stop) the controller and start a new one on the same address and
        database, calling `while_down` in between; the agents reconnect by themselves."""
        ctl = next(p for p in self.procs if p.name.startswith("controller"))
        if kill:
            os.killpg(ctl.popen.pid, signal.SIGKILL)
        else:
            ctl.popen.send_signal(signal.SIGTERM)
        ctl.popen.wait(15)
        self.procs.remove(ctl)
        if while_down is not None:
            while_down()
        restarts = sum(1 for p in self.workdir.glob("controller*.log"))
        self.address = self._start_controller(f"controller-{restarts + 1}", self.address,
                                              timeout_s)

    def restart_agent(self, node: str) -> None:
        """Stop a node's agent as systemd would (SIGTERM) and start it again."""
        proc = next(p for p in self.procs if p.name == node)
        proc.popen.send_signal(signal.SIGTERM)
        proc.popen.wait(30)
        self.procs.remove(proc)
        self._start_agent(node)

    def _start_agent(self, node: str) -> None:
        spec = f"{self.sim_spec},inbox={self.inbox}"
        self._spawn(node, [
            PY, "-m", "agent", "run", "--controller", self.address, "--insecure",
            "--simulate", spec, "--node", node, "--metrics-listen", "127.0.0.1:0",
            "--interval", str(self.interval_s), "--state-dir", str(self.workdir / node),
            "--workdir", str(REPO)])

    def _start_controller(self, name: str, listen: str, timeout_s: float) -> str:
        ctl = self._spawn(name, [
            PY, "-m", "controller", "serve", "--listen", listen,
            "--db", str(self.workdir / "fleet.db"), "--insecure",
            "--rendezvous-host", "127.0.0.1", "--run-workdir", str(REPO),
            *self.controller_args])
        self.procs.insert(0, self.procs.pop())  # stopped last, like the first one
        return self._wait_line(ctl, r"listening on (\S+)", timeout_s)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait(5)
        self.procs.clear()

    # ------------------------------------------------------------------ helpers

    def inject(self, fault: str) -> None:
        """Append a fault item (sim syntax, e.g. 'xid79@gb300-d1-t00/gpu1') to the inbox."""
        with open(self.inbox, "a") as f:
            f.write(fault + "\n")

    @contextlib.contextmanager
    def admin(self) -> Iterator[Any]:
        channel = grpc.insecure_channel(self.address)
        try:
            yield pb_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]
        finally:
            channel.close()

    def connected(self) -> list[str]:
        with self.admin() as stub:
            nodes = stub.ListNodes(pb.ListNodesRequest(), timeout=5).nodes
        return [n.name for n in nodes if n.connected]

    def node_state(self, name: str) -> str:
        with self.admin() as stub:
            return str(stub.GetNode(pb.GetNodeRequest(name=name), timeout=5).node.state)

    def gpufleet(self, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run the operator CLI against this fleet."""
        return subprocess.run(
            [str(Path(PY).parent / "gpufleet"), "--controller", self.address, *args],
            capture_output=True, text=True, timeout=timeout_s, cwd=REPO,
            env=dict(os.environ, COLUMNS=str(self.columns)))

    def rank_log(self, node: str, run: str, attempt: int, rank: int) -> Path:
        return self.workdir / node / "ranks" / run / f"attempt-{attempt}" / f"rank-{rank}.log"

    @staticmethod
    def wait_for(condition: Any, timeout_s: float, what: str, poll_s: float = 0.1) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(poll_s)
        raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")

    def _spawn(self, name: str, argv: list[str]) -> Proc:
        log = self.workdir / f"{name}.log"
        out = open(log, "a")  # noqa: SIM115 - the child owns it for its lifetime (a restart appends)
        popen = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
        proc = Proc(name, popen, log)
        self.procs.append(proc)
        return proc

    def _wait_line(self, proc: Proc, pattern: str, timeout_s: float) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = regex.search(proc.log.read_text())
            if match:
                return match.group(1)
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: {proc.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise TimeoutError(f"{proc.name} did not print {pattern!r}: {proc.log.read_text()[-2000:]}")


def write_run_spec(dest: Path, *, name: str | None = None, steps: int | None = None,
                   checkpoint_dir: Path | None = None, extra_args: Sequence[str] = (),
                   supervision: dict[str, Any] | None = None) -> Path:
    """The committed mini run spec, with this interpreter (not `python` from PATH) and the
    given overrides, written to `dest`."""
    doc = tomllib.loads((REPO / "examples" / "deepseek_v3_mini.toml").read_text())
    run = doc["run"]
    run["command"] = [PY, *run["command"][1:], *extra_args]
    if name is not None:
        run["name"] = name
    if steps is not None:
        run["steps"] = steps
    if checkpoint_dir is not None:
        doc["checkpoint"]["dir"] = str(checkpoint_dir)
    doc["supervision"].update(supervision or {})
    dest.write_text(_toml(doc))
    return dest


def _toml(doc: dict[str, Any]) -> str:
    """Enough TOML for a run spec: tables of scalars and arrays, one level of sub-tables."""
    lines = []
    for section, table in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items() if not isinstance(v, dict)]
        for sub, inner in ((k, v) for k, v in table.items() if isinstance(v, dict)):
            lines.append(f"[{section}.{sub}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in inner.items()]
    return "\n".join(lines) + "\n"
