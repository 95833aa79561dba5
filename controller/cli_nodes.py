"""`gpufleet nodes` and `gpufleet node show`: the fleet's nodes, and one node in detail."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from controller.cli_render_nodes import node_detail_json, node_detail_view, nodes_json, nodes_table
from controller.cli_session import JsonFlag, emit_json, session, stdout_console
from controller.fleet.lifecycle import NodeState
from protos.gpufleet.v1 import fleet_pb2 as pb


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
        emit_json(nodes_json(reply.nodes))
    else:
        stdout_console().print(nodes_table(reply.nodes, time.time()))


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
        emit_json(node_detail_json(detail))
    else:
        stdout_console().print(node_detail_view(detail, time.time()))


def register(app: typer.Typer) -> None:
    """Add `nodes` and the `node` sub-app (`node show`) to the app."""
    app.command("nodes")(nodes_command)
    node_app = typer.Typer(help="One node in detail.", no_args_is_help=True)
    node_app.command("show")(node_show_command)
    app.add_typer(node_app, name="node")
