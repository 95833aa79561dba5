"""The `gpufleet` typer app: its global options (how to reach the controller, also from
`GPUFLEET_<OPTION>` environment variables) and the core commands, registered in the order
`--help` lists them; `run_app` is the `gpufleet run` sub-app that extensions fill."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from controller import cli_drain, cli_events, cli_nodes, cli_preflight
from controller.cli_connection import DEFAULT_CONTROLLER, Connection

app = typer.Typer(
    name="gpufleet",
    help="Operate a gpufleet controller: nodes, preflight, drains, events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
run_app = typer.Typer(help="Training runs.", no_args_is_help=True)


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


for _register in (cli_nodes.register, cli_drain.register, cli_events.register,
                  cli_preflight.register):
    _register(app)
