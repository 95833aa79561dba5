"""`gpufleet-agent`: a one-shot health check and the node daemon (a thin composition root)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from agent.checks.xid import check_xid_history
from agent.gpu.xid_parse import XidHistory
from agent.model import NodeReport, Severity
from agent.node_setup import open_sources
from agent.policy import PolicyError, load_policy
from agent.render import report_json, report_tables
from agent.sweep import Sweeper
from gpufleet_common.clock import SystemClock

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="gpufleet node agent: GPU and host health, metrics, burn-in, ranks.")

SimulateOpt = Annotated[str | None, typer.Option(
    "--simulate", envvar="GPUFLEET_SIMULATE",
    help="Simulated GPUs instead of NVML, e.g. 'h100_sxm:fault=ecc_dbe@gpu3' or a TOML file.")]
NodeOpt = Annotated[str | None, typer.Option("--node", envvar="GPUFLEET_NODE",
                                             help="Node name (default: hostname).")]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", envvar="GPUFLEET_POLICY",
                                                help="Operator policy TOML overriding defaults.")]


XID_LOOKBACK_S = 3600.0
"""Default look back of `check` into the kernel log: a check run by hand or by Slurm
(HealthCheckInterval=300 in deploy/slurm) sees an XID of the last hour; /dev/kmsg holds this
boot only, so a reboot (XID 79's remedy) clears it, a GPU reset does not (see the README)."""
MAX_XID_LOOKBACK_S = 30 * 86400.0


@app.callback()
def _root() -> None:
    """gpufleet node agent."""


def _fail(code: int, message: str) -> typer.Exit:
    print(f"gpufleet-agent: {message}", file=sys.stderr)
    return typer.Exit(code)


@app.command()
def check(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    window: Annotated[float, typer.Option(
        "--window", min=0.0, max=3600.0,
        help="Watch this many seconds before judging: XIDs meanwhile count, rates over it.")] = 0.0,
    xid_lookback: Annotated[float, typer.Option(
        "--xid-lookback", envvar="GPUFLEET_XID_LOOKBACK",
        help="Also judge XIDs the kernel log recorded this many seconds before the check; "
             "0 = only new ones.")] = XID_LOOKBACK_S,
    kernel_log: Annotated[Path | None, typer.Option(
        "--kernel-log", envvar="GPUFLEET_KERNEL_LOG",
        help="Read XIDs from this file (timestamped lines, e.g. journalctl -k -o short-iso) "
             "instead of /dev/kmsg.")] = None,
    policy: PolicyOpt = None,
    simulate: SimulateOpt = None,
    node: NodeOpt = None,
) -> None:
    """One-shot verdict of this node. Exit 0 OK, 1 WARN, 2 CRITICAL, 3 UNKNOWN (Nagios)."""
    clock = SystemClock()
    if not 0 <= xid_lookback <= MAX_XID_LOOKBACK_S:  # also refuses nan
        raise _fail(Severity.UNKNOWN.exit_code, "--xid-lookback must be between 0 and "
                    f"{MAX_XID_LOOKBACK_S:.0f} seconds, got {xid_lookback}")
    try:
        loaded = load_policy(policy)
    except PolicyError as exc:
        raise _fail(Severity.UNKNOWN.exit_code, str(exc)) from exc
    try:
        sources = open_sources(simulate, node, clock, nvml=(ctx.obj or {}).get("nvml"),
                               policy=loaded, xid_lookback_s=xid_lookback,
                               kernel_log=str(kernel_log) if kernel_log else None)
    except ValueError as exc:
        raise _fail(Severity.UNKNOWN.exit_code, str(exc)) from exc
    try:
        report = Sweeper(sources.name, sources.backend, clock, loaded,
                         sources.host_reader).observe(window)
    finally:
        sources.backend.close()
    history = sources.kernel_log.history if sources.kernel_log is not None else None
    report = _with_xid_history(report, history)
    if json_out:
        print(json.dumps(report_json(report, window, history.lookback_s if history else None),
                         indent=2, default=str))
    else:
        Console(emoji=False, highlight=False).print(report_tables(report))
    raise typer.Exit(report.verdict.exit_code)


def _with_xid_history(report: NodeReport, history: XidHistory | None) -> NodeReport:
    """The report plus what the kernel-log look back could not see (its XIDs are in the sample)."""
    if history is None:
        return report
    notes = check_xid_history(history.lookback_s, history.error, history.undated)
    return NodeReport(report.sample, report.findings + tuple(notes))


@app.command()
def run(
    controller: Annotated[str | None, typer.Option(
        "--controller", envvar="GPUFLEET_CONTROLLER",
        help="Controller HOST:PORT; without it the agent runs standalone.")] = None,
    node: NodeOpt = None,
    metrics_listen: Annotated[str, typer.Option(
        "--metrics-listen", envvar="GPUFLEET_METRICS_LISTEN",
        help="Where /metrics listens (dcgm-exporter's port is 9400).")] = "127.0.0.1:9400",
    spool: Annotated[Path | None, typer.Option(
        "--spool", envvar="GPUFLEET_SPOOL", help="Spool directory for reports.")] = None,
    simulate: SimulateOpt = None,
    interval: Annotated[float, typer.Option(
        "--interval", envvar="GPUFLEET_INTERVAL", help="Seconds between sweeps.")] = 10.0,
    policy: PolicyOpt = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", envvar="GPUFLEET_TLS_CERT")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", envvar="GPUFLEET_TLS_KEY")] = None,
    tls_ca: Annotated[Path | None, typer.Option("--tls-ca", envvar="GPUFLEET_TLS_CA")] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", envvar="GPUFLEET_INSECURE",
        help="Plaintext to a loopback controller (refused otherwise).")] = False,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", envvar="GPUFLEET_STATE_DIR",
        help="Where rank logs (and, without systemd, the progress socket) live.")] = None,
    workdir: Annotated[Path | None, typer.Option(
        "--workdir", envvar="GPUFLEET_WORKDIR", help="Working directory of burn-ins.")] = None,
    progress_socket: Annotated[Path | None, typer.Option(
        "--progress-socket", envvar="GPUFLEET_PROGRESS_SOCKET",
        help="The ranks' progress socket, also for ranks the agent did not start (Slurm). "
             "Default: $RUNTIME_DIRECTORY/progress.sock, else in --state-dir.")] = None,
    progress_socket_group: Annotated[str | None, typer.Option(
        "--progress-socket-group", envvar="GPUFLEET_PROGRESS_SOCKET_GROUP",
        help="Group that may report progress (the socket is mode 0660).")] = None,
) -> None:
    """The node daemon: sweeps, /metrics, controller stream, directives."""
    from agent.run_command import RunOptions, option_problems, run_daemon

    options = RunOptions(controller, node, metrics_listen, spool, simulate, interval, tls_cert,
                         tls_key, tls_ca, insecure, state_dir, workdir,
                         progress_socket=progress_socket,
                         progress_socket_group=progress_socket_group)
    problems = option_problems(options)
    try:
        loaded = load_policy(policy)
    except PolicyError as exc:
        problems.append(str(exc))
    if problems:
        raise _fail(2, "; ".join(problems))
    try:
        code = run_daemon(options, loaded)
    except ValueError as exc:
        raise _fail(2, str(exc)) from exc
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
