"""`gpufleet preflight`: admit or reject nodes on fresh evidence, following the controller's
Preflight stream with live progress on stderr; exits 1 when any requested node is rejected."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli_connection import EXIT_REJECTED, EXIT_USAGE, CliError, follow_stream
from controller.cli_render_preflight import PreflightProgressView, preflight_json, preflight_table
from controller.cli_session import JsonFlag, Session, emit_json, failures, session, stdout_console
from protos.gpufleet.v1 import fleet_pb2 as pb


def _stream_preflight(
    s: Session, request: pb.PreflightRequest, deadline: float | None, show_progress: bool
) -> pb.PreflightResult:
    """Follow the Preflight stream to its result, feeding progress bars on stderr."""
    call = s.admin.Preflight(request, timeout=deadline, metadata=s.metadata)
    result: pb.PreflightResult = follow_stream(call, PreflightProgressView,
                                               show_progress, "preflight")
    return result


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
        emit_json(preflight_json(result))
    else:
        stdout_console().print(preflight_table(result))
    rejected = [v.node for v in result.verdicts if not v.admitted]
    if rejected:
        shown = ", ".join(rejected[:5]) + (", ..." if len(rejected) > 5 else "")
        total = len(result.verdicts)
        typer.echo(f"gpufleet: {len(rejected)} of {total} nodes rejected: {shown}", err=True)
        raise typer.Exit(EXIT_REJECTED)


def register(app: typer.Typer) -> None:
    """Add `preflight` to the app."""
    app.command("preflight")(preflight_command)
