"""`gpufleet drain` and `gpufleet undrain`: take a node out of service and return it."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli_connection import EXIT_USAGE, CliError
from controller.cli_render_nodes import node_json
from controller.cli_session import JsonFlag, emit_json, failures, session
from protos.gpufleet.v1 import fleet_pb2 as pb

NodeArg = Annotated[str, typer.Argument(help="Node name.")]
REASON_HELP = "Why (kept in the node's history)."


def _change(ctx: typer.Context, undrain: bool, node: str, reason: str, as_json: bool) -> None:
    """Ask the controller to drain (or undrain) the node and print what it became."""
    with session(ctx) as s:
        rpc = s.admin.Undrain if undrain else s.admin.Drain
        view = rpc(
            pb.DrainRequest(node=node, reason=reason.strip()),
            timeout=s.conn.timeout,
            metadata=s.metadata,
        )
    if as_json:
        emit_json(node_json(view))
    else:
        shown = f" ({view.state_reason})" if view.state_reason else ""
        typer.echo(f"{view.name}: {view.state}{shown}")


def drain_command(
    ctx: typer.Context,
    node: NodeArg,
    reason: Annotated[str, typer.Option(help=REASON_HELP)],
    as_json: JsonFlag = False,
) -> None:
    """Take a node out of service; it stays drained until `undrain` or repair."""
    with failures():
        if not reason.strip():
            raise CliError("--reason must say why the node is drained", EXIT_USAGE)
    _change(ctx, False, node, reason, as_json)


def undrain_command(
    ctx: typer.Context,
    node: NodeArg,
    reason: Annotated[str, typer.Option(help=REASON_HELP)] = "",
    as_json: JsonFlag = False,
) -> None:
    """Return a drained node to service (it must pass preflight again)."""
    _change(ctx, True, node, reason, as_json)


def register(app: typer.Typer) -> None:
    """Add `drain` and `undrain` to the app."""
    app.command("drain")(drain_command)
    app.command("undrain")(undrain_command)
