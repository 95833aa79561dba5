"""What every `gpufleet` command shares: the session with the controller for one command (the
typed FleetAdmin stub, call metadata, gRPC failures as one stderr line), the `--json` flag and
where output goes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import grpc
import typer
from rich.console import Console

from controller.cli_connection import (
    CliError,
    Connection,
    Metadata,
    call_metadata,
    describe_rpc_error,
    one_line,
    open_channel,
)
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


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


def stdout_console() -> Console:
    """A console for tables on stdout (long lines are not wrapped)."""
    return Console(soft_wrap=False)
