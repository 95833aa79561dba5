"""`gpufleet events`: the fleet's events, newest first, with `--since` parsing."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Annotated

import typer

from controller.cli_connection import EXIT_USAGE, CliError
from controller.cli_render_nodes import event_json, events_table
from controller.cli_session import JsonFlag, emit_json, failures, session, stdout_console
from protos.gpufleet.v1 import fleet_pb2 as pb

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
        emit_json([event_json(e) for e in reply.events])
    else:
        stdout_console().print(events_table(reply.events, now))


def register(app: typer.Typer) -> None:
    """Add `events` to the app."""
    app.command("events")(events_command)
