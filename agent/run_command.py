"""Wiring of `gpufleet-agent run`: builds the daemon from flags (composition root, no logic)."""

from __future__ import annotations

import grp
import ipaddress
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from agent.daemon import AgentDaemon
from agent.exporter.collector import NodeCollector, agent_version
from agent.exporter.server import serve_metrics
from agent.exporter.xid import XidCounter
from agent.link.client import ControllerLink
from agent.link.config import LinkConfig, TlsConfig
from agent.link.spool import Spool
from agent.link.types import NodeIdentity
from agent.node_setup import NodeSources, open_sources
from agent.policy import Policy
from agent.ranks.progress import ProgressListener, ProgressListenerError
from agent.ranks.runner import RankRunner
from agent.ranks.senders import SenderPins
from agent.sweep import Sweeper
from gpufleet_common.clock import SystemClock


@dataclass(frozen=True)
class RunOptions:
    controller: str | None
    node: str | None
    metrics_listen: str
    spool: Path | None
    simulate: str | None
    interval_s: float
    tls_cert: Path | None
    tls_key: Path | None
    tls_ca: Path | None
    insecure: bool
    state_dir: Path | None
    workdir: Path | None
    progress_socket: Path | None = None  # None: $RUNTIME_DIRECTORY, else the state dir
    progress_socket_group: str | None = None  # group allowed to report (socket mode 0660)


PROGRESS_SOCKET_NAME = "progress.sock"
PROGRESS_SOCKET_MODE = 0o660


def progress_socket_path(o: RunOptions, state_dir: Path, environ: Mapping[str, str]) -> Path:
    """Where the standing progress socket lives: the flag, else systemd's runtime directory
    (`RUNTIME_DIRECTORY`, its first entry), else the state directory."""
    if o.progress_socket is not None:
        return o.progress_socket
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return (Path(runtime) if runtime else state_dir) / PROGRESS_SOCKET_NAME


def group_id(name: str) -> int:
    """The gid of a group name or number; ValueError when there is no such group."""
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ValueError(f"no such group {name!r}") from None


def split_hostport(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[v6]:PORT' → (host, port); ValueError with the reason otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def option_problems(o: RunOptions) -> list[str]:
    """Every problem with the flags, at once."""
    problems = []
    try:
        split_hostport(o.metrics_listen)
    except ValueError as exc:
        problems.append(f"--metrics-listen: {exc}")
    if o.interval_s <= 0:
        problems.append("--interval must be > 0")
    if o.controller:
        try:
            host, _ = split_hostport(o.controller)
        except ValueError as exc:
            problems.append(f"--controller: {exc}")
            host = ""
        tls = o.tls_ca is not None
        if tls and o.insecure:
            problems.append("give either --tls-ca/--tls-cert/--tls-key or --insecure, not both")
        if not tls and not o.insecure:
            problems.append("--controller needs --tls-ca/--tls-cert/--tls-key (or --insecure "
                            "for a loopback controller)")
        if o.insecure and host and not is_loopback(host):
            problems.append(f"--insecure is refused for a non-loopback controller ({host})")
        if tls and (o.tls_cert is None or o.tls_key is None):
            problems.append("--tls-cert and --tls-key are required with --tls-ca")
    if o.progress_socket is not None and not o.progress_socket.is_absolute():
        problems.append(f"--progress-socket must be an absolute path: {o.progress_socket}")
    if o.progress_socket_group:
        try:
            group_id(o.progress_socket_group)
        except ValueError as exc:
            problems.append(f"--progress-socket-group: {exc}")
    return problems


def open_progress(o: RunOptions, state_dir: Path, daemon: AgentDaemon) -> ProgressListener:
    """The standing progress socket: the agent's ranks and any other rank on this node (a Slurm
    job's) report there; records are validated, pinned to their first sender's uid
    (`agent.ranks.senders`) and forwarded by `daemon.on_progress`. ValueError when it cannot
    be bound."""
    path = progress_socket_path(o, state_dir, os.environ)
    group = group_id(o.progress_socket_group) if o.progress_socket_group else None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return ProgressListener(path, on_record=daemon.on_progress,
                                socket_mode=PROGRESS_SOCKET_MODE, socket_group=group,
                                senders=SenderPins())
    except (OSError, ProgressListenerError) as exc:
        raise ValueError(f"--progress-socket: {exc}") from exc


def identity_of(daemon: AgentDaemon, sources: NodeSources, hostname: str) -> NodeIdentity:
    """The Hello facts, from the latest sweep."""
    report = daemon.state.last_report
    if report is None:  # never sweep here: a sweep would swallow pending XID events
        raise RuntimeError("the first sweep must precede the controller link")
    sample = report.sample
    host = sample.host
    return NodeIdentity(
        node=sources.name, hostname=hostname, agent_version=agent_version(),
        sku=sources.sku or daemon.sweeper.policy.node_sku(sample),
        driver_version=sample.system.driver_version or "",
        cuda_driver_version=sample.system.cuda_driver_version or "",
        gpus=sample.gpus, nvlink_domain=sources.nvlink_domain or _fabric_domain(sample, sources),
        rack=sources.rack, ib_ports=host.ib_ports if host else (),
        rails=dict(host.rails) if host else {},
    )


def _fabric_domain(sample: object, sources: NodeSources) -> str:
    for gpu in getattr(sample, "gpus", ()):
        fabric = gpu.fabric
        if fabric is not None and fabric.state == 3 and fabric.cluster_uuid:
            return f"{fabric.cluster_uuid}/{fabric.clique_id}"
    return sources.name


def run_daemon(o: RunOptions, policy: Policy) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    import socket

    clock = SystemClock()
    sources = open_sources(o.simulate, o.node, clock, policy=policy)
    state_dir = o.state_dir or Path(tempfile.mkdtemp(prefix=f"gpufleet-{sources.name}-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    xids = XidCounter()
    collector = NodeCollector(registry, xids=xids)
    host, port = split_hostport(o.metrics_listen)
    metrics, bound = serve_metrics(registry, host, port)
    print(f"gpufleet-agent: node {sources.name}; metrics on http://{host}:{bound}/metrics",
          flush=True)
    sweeper = Sweeper(sources.name, sources.backend, clock, policy, sources.host_reader)
    set_load = getattr(sources.backend, "set_load", None)
    daemon = AgentDaemon(sweeper, clock, o.interval_s, collector, xids,
                         set_load=set_load, workdir=o.workdir)
    progress: ProgressListener | None = None
    spool: Spool | None = None
    first = daemon.sweep_and_publish()  # before the link: its Hello describes this sweep
    if o.controller:
        spool = Spool(o.spool or state_dir / "spool")
        tls = (TlsConfig.from_files(o.tls_ca, o.tls_cert, o.tls_key)
               if o.tls_ca is not None else None)
        hostname = socket.gethostname()
        daemon.link = ControllerLink(
            o.controller, spool, lambda: identity_of(daemon, sources, hostname),
            on_directive=daemon.handle, tls=tls, config=LinkConfig(), clock=clock)
        progress = open_progress(o, state_dir, daemon)
        print(f"gpufleet-agent: rank progress on {progress.path}", flush=True)
        daemon.ranks = RankRunner(state_dir / "ranks", daemon.on_rank_exit,
                                  progress_socket=str(progress.path), clock=clock)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if daemon.link is not None:
            daemon.forward(first)  # the first sweep's XIDs and report, spooled for the controller
            daemon.link.start()
            print(f"gpufleet-agent: streaming to {o.controller}", flush=True)
        daemon.run(stop)
    finally:
        if daemon.ranks is not None:
            daemon.ranks.close()
        if progress is not None:
            progress.stop()
        if daemon.link is not None:
            daemon.link.close()
        if spool is not None:
            spool.close()
        metrics.close()
        sources.backend.close()
    print("gpufleet-agent: stopped", file=sys.stderr)
    return 0
