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
`gpufleet run ...` once it has any) or add their own sub-apps, and reuse the helpers (kept
importable from here): `session` (channel + one-line gRPC errors), `open_channel`,
`call_metadata`, `failures`, `emit_json`, `CliError`.

This module is the entry point and the composition; the pieces live in their own modules:
`cli_app` (the app and its global options), `cli_nodes`, `cli_drain`, `cli_events`,
`cli_preflight` (the core commands), `cli_session` (what every command shares),
`cli_connection` (channel, credentials, exit codes) and `cli_render` (output).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Sequence

import typer

from controller.cli_app import app as app, run_app as run_app  # `X as X`: re-exported
from controller.cli_connection import (
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
from controller.cli_events import parse_since as parse_since
from controller.cli_session import (
    FleetAdminApi as FleetAdminApi,
    JsonFlag as JsonFlag,
    PreflightCall as PreflightCall,
    Session as Session,
    emit_json as emit_json,
    failures as failures,
    session as session,
)

EXTENSIONS: tuple[str, ...] = ("controller.run_cli", "controller.burnin_cli")


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
