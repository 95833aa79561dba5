"""A real Slurm cluster for the tests: a private munged, slurmctld and three slurmd (`slurmd -N
nodeX`) on loopback, with gpufleet's prolog/epilog/health-check hooks configured from
deploy/slurm/slurm.conf.gpufleet.

Everything lives in one temporary directory (state, spool, logs, munge key and socket) and
uses free ports, so nothing of the host's Slurm or munge is touched. Daemons run in the
foreground under this process and are stopped by PID. Tests that use `slurm_cluster` are
skipped, with the reason, where Slurm is not installed, we are not root, or the cluster does
not come up.

Each simulated node's GPUs come from `hooks/simulate/<node>` (an agent `--simulate` spec,
default a healthy H100 node), so a test can make the hooks see a fault on one node.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controller.slurm.commands import SubprocessSlurm

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "slurm"
NODES = ("node1", "node2", "node3")
INSTALLED_HOOKS = "/usr/local/libexec/gpufleet/"
HEALTHY = "h100_sxm"
_BINARIES = ("munged", "munge", "unmunge", "slurmctld", "slurmd", "sinfo", "scontrol",
             "squeue", "sbatch", "scancel", "srun")
_START_TIMEOUT_S = 30.0


def agent_executable() -> str | None:
    """The venv's gpufleet-agent (the hooks run it)."""
    beside = Path(sys.executable).parent / "gpufleet-agent"
    return str(beside) if beside.is_file() else shutil.which("gpufleet-agent")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path.name}: no log)"


@dataclass
class SlurmCluster:
    """Handle on the running cluster."""

    root: Path
    conf: Path
    env: dict[str, str]
    nodes: tuple[str, ...]
    hooks: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def commands(self, timeout_s: float = 15.0) -> SubprocessSlurm:
        return SubprocessSlurm(self.env, timeout_s=timeout_s)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster (for assertions in Slurm's own words)."""
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True,
                              timeout=15, check=check)

    def simulate(self, node: str, spec: str) -> None:
        """What the hooks' agent check sees on `node` from now on."""
        (self.hooks / "simulate" / node).write_text(spec + "\n")

    def node_states(self) -> dict[str, str]:
        out = self.run("sinfo", "-N", "-h", "-O", "NodeList:0|,StateComplete:0").stdout
        return dict(line.split("|", 1) for line in out.split())

    def wait_until(self, what: str, predicate: Callable[[], bool],
                   timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}; "
                                     f"nodes: {self.node_states()}")
            time.sleep(0.2)

    def wait_idle(self, timeout_s: float = _START_TIMEOUT_S) -> None:
        self.wait_until("every node idle", lambda: all(
            self.node_states().get(n) == "idle" for n in self.nodes), timeout_s)

    def reset(self) -> None:
        """Back to the start: no jobs, healthy simulated GPUs, every node idle."""
        self.run("scancel", "--user", "root", check=False)
        for spec in (self.hooks / "simulate").iterdir():
            spec.write_text(HEALTHY + "\n")
        self.wait_until("jobs gone", lambda: not self.run(
            "squeue", "-h", "-t", "pending,running,completing,configuring", "-o", "%i"
        ).stdout.strip())
        for node, state in self.node_states().items():
            if "drain" in state or "down" in state:
                self.run("scontrol", "update", f"NodeName={node}", "State=RESUME", check=False)
        self.wait_idle()

    def stop(self) -> None:
        if "slurmctld" in self.procs:
            self.run("scancel", "--user", "root", check=False)
        for name in [n for n in self.procs if n.startswith("slurmd")] + ["slurmctld", "munged"]:
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _why_not() -> str | None:
    missing = [b for b in _BINARIES if shutil.which(b) is None]
    if missing:
        return (f"Slurm/munge not installed (missing {', '.join(missing)}); "
                "install with: apt-get install slurm-wlm")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs; run the Slurm tests as root"
    if agent_executable() is None:
        return "gpufleet-agent is not installed (pip install -e .)"
    return None


def _hooks(root: Path, conf: Path) -> Path:
    """Shims named like the installed hooks: each points the real script at a test env file."""
    hooks = root / "hooks"
    (hooks / "simulate").mkdir(parents=True)
    for node in NODES:
        (hooks / "simulate" / node).write_text(HEALTHY + "\n")
    env_file = hooks / "gpufleet-slurm.env"
    env_file.write_text(
        f"GPUFLEET_AGENT={agent_executable()}\n"
        f"GPUFLEET_PYTHON={sys.executable}\n"
        f"SLURM_CONF={conf}\n"
        "GPUFLEET_CHECK_TIMEOUT=30\n"
        "GPUFLEET_EPILOG_WINDOW=0\n"
        f'GPUFLEET_SIMULATE=$(cat "{hooks}/simulate/${{SLURMD_NODENAME:-none}}" '
        f"2>/dev/null || echo {HEALTHY})\n")
    for script in ("gpufleet-healthcheck.sh", "gpufleet-prolog.sh", "gpufleet-epilog.sh"):
        shim = hooks / script
        shim.write_text(f"#!/bin/sh\nGPUFLEET_SLURM_ENV={env_file}\nexport GPUFLEET_SLURM_ENV\n"
                        f"exec {DEPLOY / script}\n")
        shim.chmod(0o755)
    return hooks


def _slurm_conf(root: Path, munge_socket: Path, hooks: Path) -> str:
    host = socket.gethostname().split(".")[0]
    node_lines = "\n".join(
        f"NodeName={n} NodeHostname={host} NodeAddr=127.0.0.1 Port={_free_port()} CPUs=1 "
        "RealMemory=1000 State=UNKNOWN" for n in NODES)
    gpufleet = (DEPLOY / "slurm.conf.gpufleet").read_text().replace(INSTALLED_HOOKS, f"{hooks}/")
    return f"""ClusterName=gpufleettest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmctldPort={_free_port()}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
{gpufleet}
{node_lines}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP
"""


def _start_munged(cluster: SlurmCluster) -> Path:
    key, sock = cluster.root / "munge.key", cluster.root / "munge.sock"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    log = (cluster.root / "log" / "munged.out").open("wb")
    cluster.procs["munged"] = subprocess.Popen(
        ["munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={key}",
         f"--pid-file={cluster.root}/munged.pid", f"--seed-file={cluster.root}/munged.seed",
         f"--log-file={cluster.root}/log/munged.log"], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        cred = subprocess.run(["munge", "-n", "-S", str(sock)], capture_output=True, timeout=5)
        if cred.returncode == 0 and subprocess.run(
                ["unmunge", "-S", str(sock)], input=cred.stdout, capture_output=True,
                timeout=5).returncode == 0:
            return sock
        time.sleep(0.1)
    raise RuntimeError(f"munged did not answer: {_tail(cluster.root / 'log' / 'munged.out')}")


def _start(cluster: SlurmCluster) -> None:
    sock = _start_munged(cluster)
    cluster.conf.write_text(_slurm_conf(cluster.root, sock, cluster.hooks))
    for name, argv in [("slurmctld", ["slurmctld", "-D", "-i"]),
                       *((f"slurmd-{n}", ["slurmd", "-D", "-N", n]) for n in NODES)]:
        log = (cluster.root / "log" / f"{name}.out").open("wb")
        cluster.procs[name] = subprocess.Popen(argv, env=cluster.env, stdout=log, stderr=log,
                                               cwd=cluster.root)
    try:
        cluster.wait_idle()
    except (AssertionError, subprocess.SubprocessError) as exc:
        logs = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in sorted(
            (cluster.root / "log").iterdir()))
        raise RuntimeError(f"{exc}\n{logs}") from exc


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """The running cluster (session-wide; every test leaves it as it found it)."""
    reason = _why_not()
    if reason is not None:
        pytest.skip(f"Slurm tests skipped: {reason}")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    # Nothing of an enclosing Slurm job (SLURM_JOB_ID, ...) leaks into the test cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(root, conf, env, NODES, _hooks(root, conf))
    try:
        _start(cluster)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        cluster.stop()
        pytest.skip(f"Slurm tests skipped: the test cluster did not start: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def slurm(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster, reset after the test (jobs cancelled, drains lifted, GPUs healthy)."""
    yield slurm_cluster
    slurm_cluster.reset()
