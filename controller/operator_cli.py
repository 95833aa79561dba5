"""`gpufleet`: the operator's command line, a thin client of the controller's FleetAdmin API.

    gpufleet [--controller HOST:PORT] [--insecure] [--tls-ca F --tls-cert F --tls-key F]
             [--token-file F] [--timeout S] COMMAND ...

Every global option can also come from the environment as `GPUFLEET_<OPTION>` (for example
`GPUFLEET_CONTROLLER`, `GPUFLEET_TOKEN_FILE`); a flag wins over the environment. Without TLS
files and without `--insecure`, a loopback controller is reached in plaintext (the controller
only serves plaintext on loopback); any other host needs TLS or an explicit `--insecure`.

Every command takes `--json` (stdout stays machine-readable; progress goes to stderr).

Exit codes:
    0  success
    1  preflight: at least one requested node was rejected
    2  usage: bad flags or arguments, unreadable credential files
    3  the controller could not be reached or did not answer in time
    4  the controller refused the request (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT,
       PERMISSION_DENIED, UNAUTHENTICATED, ...)
    5  any other error
On failure exactly one line, starting "gpufleet: ", goes to stderr.

Room for more commands: modules named in `EXTENSIONS` are imported when present and their
`register(app: typer.Typer) -> None` is called; they may add commands to `run_app` (shown as
`gpufleet run ...` once it has any) or add their own sub-apps, and reuse the helpers here:
`session` (channel + one-line gRPC errors), `open_channel`, `call_metadata`, `failures`,
`emit_json`, `CliError`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

import grpc
import typer
from rich.console import Console

from controller import cli_render as render
from controller.cli_connection import (  # `X as X`: re-exported for extensions and tests
    DEFAULT_CONTROLLER as DEFAULT_CONTROLLER,
    EXIT_ERROR as EXIT_ERROR,
    EXIT_OK as EXIT_OK,
    EXIT_REFUSED as EXIT_REFUSED,
    EXIT_REJECTED as EXIT_REJECTED,
    EXIT_UNREACHABLE as EXIT_UNREACHABLE,
    EXIT_USAGE as EXIT_USAGE,
    CliError as CliError,
    Connection as Connection,
    Metadata as Metadata,
    call_metadata as call_metadata,
    describe_rpc_error as describe_rpc_error,
    follow_stream as follow_stream,
    is_loopback as is_loopback,
    one_line as one_line,
    open_channel as open_channel,
    parse_target as parse_target,
)
from controller.fleet.lifecycle import NodeState
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc

EXTENSIONS: tuple[str, ...] = ("controller.run_cli", "controller.burnin_cli")


class PreflightCall(Protocol):
    """The server stream of a Preflight call."""

    def __iter__(self) -> Iterator[pb.PreflightUpdate]: ...

    def cancel(self) -> bool: ...


class FleetAdminApi(Protocol):
    """The FleetAdmin calls this CLI makes (the generated stub, typed)."""

    def ListNodes(
        self, request: pb.ListNodesRequest, *, timeout: float | None, metadata: Metadata
    ) -> pb.ListNodesResponse: ...

    def GetNode(
        self, request: pb.GetNodeRequest, *, timeout: float | None, metadata: Metadata
    ) -> pb.NodeDetail: ...

    def Drain(
        self, request: pb.DrainRequest, *, timeout: float | None, metadata: Metadata
    ) -> pb.NodeView: ...

    def Undrain(
        self, request: pb.DrainRequest, *, timeout: float | None, metadata: Metadata
    ) -> pb.NodeView: ...

    def ListEvents(
        self, request: pb.ListEventsRequest, *, timeout: float | None, metadata: Metadata
    ) -> pb.ListEventsResponse: ...

    def Preflight(
        self, request: pb.PreflightRequest, *, timeout: float | None, metadata: Metadata
    ) -> PreflightCall: ...


_admin_stub: Callable[[grpc.Channel], FleetAdminApi] = pb_grpc.FleetAdminStub


@dataclass(frozen=True)
class Session:
    """An open connection for one command: the admin stub, call metadata and settings."""

    conn: Connection
    channel: grpc.Channel
    admin: FleetAdminApi
    metadata: Metadata


@contextmanager
def failures() -> Iterator[None]:
    """Turn a CliError into its one stderr line and exit code."""
    try:
        yield
    except CliError as exc:
        typer.echo(f"gpufleet: {one_line(str(exc))}", err=True)
        raise typer.Exit(exc.code) from None


@contextmanager
def session(ctx: typer.Context) -> Iterator[Session]:
    """Open the controller connection for a command; every failure becomes one stderr line."""
    conn = ctx.find_object(Connection) or Connection()
    with failures():
        channel = open_channel(conn)
        try:
            yield Session(conn, channel, _admin_stub(channel), call_metadata(conn))
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = (exc.details() if isinstance(exc, grpc.Call) else str(exc)) or ""
            raise describe_rpc_error(code, details, conn) from None
        finally:
            channel.close()


def emit_json(value: Any) -> None:
    """Print a JSON document on stdout."""
    typer.echo(json.dumps(value, indent=2))


def _stdout() -> Console:
    return Console(soft_wrap=False)


# ---------------------------------------------------------------- pure argument parsing

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_since(text: str, now: float) -> float:
    """`--since`: a duration ago ("90", "90s", "10m", "2h", "1d") or an ISO-8601 time (local
    time unless it names a zone) -> epoch seconds."""
    value = text.strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", value)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2) or "s"]
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise ValueError(
            f"--since {text!r}: expected a duration like 90s, 10m, 2h, 1d or an ISO-8601 time"
        ) from None


# ---------------------------------------------------------------- the app

app = typer.Typer(
    name="gpufleet",
    help="Operate a gpufleet controller: nodes, preflight, drains, events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
node_app = typer.Typer(help="One node in detail.", no_args_is_help=True)
app.add_typer(node_app, name="node")
run_app = typer.Typer(help="Training runs.", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


@app.callback()
def _root(
    ctx: typer.Context,
    controller: Annotated[
        str,
        typer.Option(envvar="GPUFLEET_CONTROLLER", help="Controller admin address HOST:PORT."),
    ] = DEFAULT_CONTROLLER,
    insecure: Annotated[
        bool,
        typer.Option("--insecure", envvar="GPUFLEET_INSECURE", help="Plaintext, no TLS."),
    ] = False,
    tls_ca: Annotated[
        Path | None, typer.Option(envvar="GPUFLEET_TLS_CA", help="CA bundle (PEM).")
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(envvar="GPUFLEET_TLS_CERT", help="Client certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(envvar="GPUFLEET_TLS_KEY", help="Client key (PEM).")
    ] = None,
    token_file: Annotated[
        Path | None, typer.Option(envvar="GPUFLEET_TOKEN_FILE", help="Operator bearer token.")
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(envvar="GPUFLEET_TIMEOUT", min=0.1, help="Seconds to wait per call."),
    ] = 10.0,
) -> None:
    ctx.obj = Connection(controller, insecure, tls_ca, tls_cert, tls_key, token_file, timeout)


@app.command("nodes")
def nodes_command(
    ctx: typer.Context,
    state: Annotated[
        NodeState | None, typer.Option(case_sensitive=False, help="Only this state.")
    ] = None,
    sku: Annotated[str, typer.Option(help="Only this SKU.")] = "",
    domain: Annotated[str, typer.Option(help="Only this NVLink domain.")] = "",
    as_json: JsonFlag = False,
) -> None:
    """List nodes with their lifecycle state and latest verdict."""
    request = pb.ListNodesRequest(state=state.value if state else "", sku=sku, nvlink_domain=domain)
    with session(ctx) as s:
        reply = s.admin.ListNodes(request, timeout=s.conn.timeout, metadata=s.metadata)
    if as_json:
        emit_json(render.nodes_json(reply.nodes))
    else:
        _stdout().print(render.nodes_table(reply.nodes, time.time()))


@node_app.command("show")
def node_show_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Node name.")],
    history: Annotated[int, typer.Option(min=1, max=10_000, help="Transitions to show.")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """A node's state, latest findings, hardware and lifecycle history."""
    with session(ctx) as s:
        detail = s.admin.GetNode(
            pb.GetNodeRequest(name=name, history_limit=history),
            timeout=s.conn.timeout,
            metadata=s.metadata,
        )
    if as_json:
        emit_json(render.node_detail_json(detail))
    else:
        _stdout().print(render.node_detail_view(detail, time.time()))


def _print_node_change(view: pb.NodeView, as_json: bool) -> None:
    if as_json:
        emit_json(render.node_json(view))
    else:
        reason = f" ({view.state_reason})" if view.state_reason else ""
        typer.echo(f"{view.name}: {view.state}{reason}")


@app.command("drain")
def drain_command(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Node name.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the node's history).")],
    as_json: JsonFlag = False,
) -> None:
    """Take a node out of service; it stays drained until `undrain` or repair."""
    with failures():
        if not reason.strip():
            raise CliError("--reason must say why the node is drained", EXIT_USAGE)
    with session(ctx) as s:
        view = s.admin.Drain(
            pb.DrainRequest(node=node, reason=reason.strip()),
            timeout=s.conn.timeout,
            metadata=s.metadata,
        )
    _print_node_change(view, as_json)


@app.command("undrain")
def undrain_command(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="Node name.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the node's history).")] = "",
    as_json: JsonFlag = False,
) -> None:
    """Return a drained node to service (it must pass preflight again)."""
    with session(ctx) as s:
        view = s.admin.Undrain(
            pb.DrainRequest(node=node, reason=reason.strip()),
            timeout=s.conn.timeout,
            metadata=s.metadata,
        )
    _print_node_change(view, as_json)


@app.command("events")
def events_command(
    ctx: typer.Context,
    node: Annotated[str, typer.Option(help="Only this node.")] = "",
    since: Annotated[
        str, typer.Option(help="Only newer: a duration ago (10m, 2h) or an ISO time.")
    ] = "",
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Fleet events, newest first."""
    now = time.time()
    with failures():
        try:
            since_at = parse_since(since, now) if since else 0.0
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    request = pb.ListEventsRequest(node=node, since=since_at, limit=limit)
    with session(ctx) as s:
        reply = s.admin.ListEvents(request, timeout=s.conn.timeout, metadata=s.metadata)
    if as_json:
        emit_json([render.event_json(e) for e in reply.events])
    else:
        _stdout().print(render.events_table(reply.events, now))


def _stream_preflight(
    s: Session, request: pb.PreflightRequest, deadline: float | None, show_progress: bool
) -> pb.PreflightResult:
    """Follow the Preflight stream to its result, feeding progress bars on stderr."""
    call = s.admin.Preflight(request, timeout=deadline, metadata=s.metadata)
    result: pb.PreflightResult = follow_stream(call, render.PreflightProgressView,
                                               show_progress, "preflight")
    return result


@app.command("preflight")
def preflight_command(
    ctx: typer.Context,
    nodes: Annotated[list[str] | None, typer.Argument(help="Nodes to gate.")] = None,
    all_nodes: Annotated[bool, typer.Option("--all", help="Gate every node.")] = False,
    run: Annotated[str, typer.Option(help="The run the nodes are gated for.")] = "",
    burnin: Annotated[
        bool, typer.Option("--burnin", help="Also require fresh burn-in evidence.")
    ] = False,
    max_age: Annotated[
        float, typer.Option(min=0, help="Re-test health older than this (s); 0 = default.")
    ] = 0.0,
    wait: Annotated[
        float, typer.Option(min=0, help="How long re-tests may take (s); 0 = default.")
    ] = 0.0,
    progress: Annotated[
        bool, typer.Option(help="Live progress on stderr (terminals only).")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Admit or reject nodes on fresh evidence, re-testing only what is stale.

    Exits 1 when any requested node is rejected.
    """
    names = list(nodes or [])
    with failures():
        if all_nodes == bool(names):
            raise CliError("name the nodes to gate, or give --all (not both)", EXIT_USAGE)
    request = pb.PreflightRequest(
        nodes=names, all=all_nodes, run=run, burnin=burnin, max_age_s=max_age, timeout_s=wait
    )
    with session(ctx) as s:
        # The controller bounds re-tests by `wait` (or its default); leave the stream open
        # that long plus the per-call timeout, or unbounded when the controller decides.
        deadline = wait + s.conn.timeout if wait else None
        result = _stream_preflight(s, request, deadline, progress)
    if as_json:
        emit_json(render.preflight_json(result))
    else:
        _stdout().print(render.preflight_table(result))
    rejected = [v.node for v in result.verdicts if not v.admitted]
    if rejected:
        shown = ", ".join(rejected[:5]) + (", ..." if len(rejected) > 5 else "")
        total = len(result.verdicts)
        typer.echo(f"gpufleet: {len(rejected)} of {total} nodes rejected: {shown}", err=True)
        raise typer.Exit(EXIT_REJECTED)


# ---------------------------------------------------------------- composition


def load_extensions(target: typer.Typer, names: Sequence[str] = EXTENSIONS) -> list[str]:
    """Import each named module that exists and call its `register(target)`; returns the
    names loaded. A module that exists but fails to import or register raises."""
    loaded = []
    for name in names:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(target)
            loaded.append(name)
    return loaded


@functools.cache
def get_app() -> typer.Typer:
    """The CLI with every installed extension registered (done once)."""
    load_extensions(app)
    if run_app.registered_commands:
        app.add_typer(run_app, name="run")
    return app


def _is_usage_error(exc: Exception) -> bool:
    """Click's usage errors carry an exit code and a message (duck-typed: typer vendors
    click, so its exception classes are not public)."""
    return isinstance(getattr(exc, "exit_code", None), int) and callable(
        getattr(exc, "format_message", None)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    command = typer.main.get_command(get_app())
    try:
        result = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="gpufleet",
            standalone_mode=False,
        )
    except typer.Abort:
        typer.echo("gpufleet: aborted", err=True)
        return EXIT_ERROR
    except Exception as exc:
        if not _is_usage_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            return EXIT_USAGE
        typer.echo(f"gpufleet: {one_line(exc.format_message())}", err=True)  # type: ignore[attr-defined]
        return int(exc.exit_code)  # type: ignore[attr-defined]
    return result if isinstance(result, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
