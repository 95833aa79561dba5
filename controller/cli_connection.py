"""How the operator CLI reaches the controller: exit codes, the connection settings, the
channel and credentials, turning gRPC failures into the one-line errors the CLI prints, and
following a server-streamed call (progress on stderr) to its final answer."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from rich.console import Console

from controller.config import is_loopback as is_loopback  # shared with the server's checks

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_REFUSED = 4
EXIT_ERROR = 5

DEFAULT_CONTROLLER = "127.0.0.1:50051"
Metadata = tuple[tuple[str, str], ...]

_REFUSED_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class CliError(Exception):
    """A failure to report as one line on stderr, with the exit code to use."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    """Collapse whitespace so a message fits the one-line error contract."""
    return " ".join(text.split())


# ---------------------------------------------------------------- connection settings


def parse_target(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [addr]:port) -> (host, port); ValueError with the reason."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", text.strip())
    if not match:
        raise ValueError(f"controller address {text!r} is not HOST:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 0 < port < 65536:
        raise ValueError(f"controller port {port} is out of range")
    return host, port


@dataclass(frozen=True)
class Connection:
    """Where the controller is and how to authenticate; validated by `check`."""

    target: str = DEFAULT_CONTROLLER
    insecure: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    token_file: Path | None = None
    timeout: float = 10.0

    @property
    def uses_tls(self) -> bool:
        """Whether TLS files were given."""
        return any(p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key))

    def check(self) -> None:
        """Raise CliError(EXIT_USAGE) naming what is inconsistent."""
        try:
            host, _ = parse_target(self.target)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        if self.insecure and self.uses_tls:
            raise CliError("--insecure conflicts with --tls-ca/--tls-cert/--tls-key", EXIT_USAGE)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise CliError("--tls-cert and --tls-key go together", EXIT_USAGE)
        if not (self.insecure or self.uses_tls or is_loopback(host)):
            raise CliError(
                f"controller {self.target} is not loopback: give --tls-ca (and --tls-cert/"
                "--tls-key for mTLS), or --insecure",
                EXIT_USAGE,
            )


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {flag} {path}: {exc.strerror or exc}", EXIT_USAGE) from None


def call_metadata(conn: Connection) -> Metadata:
    """The operator credential as call metadata (`authorization: Bearer <token>`), if any."""
    if conn.token_file is None:
        return ()
    token = _read(conn.token_file, "--token-file").decode(errors="replace").strip()
    if not token:
        raise CliError(f"--token-file {conn.token_file} is empty", EXIT_USAGE)
    return (("authorization", f"Bearer {token}"),)


def open_channel(conn: Connection) -> grpc.Channel:
    """A channel to the controller, TLS when TLS files were given."""
    conn.check()
    if not conn.uses_tls:
        return grpc.insecure_channel(conn.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(conn.tls_ca, "--tls-ca") if conn.tls_ca else None,
        private_key=_read(conn.tls_key, "--tls-key") if conn.tls_key else None,
        certificate_chain=_read(conn.tls_cert, "--tls-cert") if conn.tls_cert else None,
    )
    return grpc.secure_channel(conn.target, credentials)


def describe_rpc_error(code: grpc.StatusCode, details: str, conn: Connection) -> CliError:
    """A gRPC failure as the one line and exit code the operator sees."""
    details = one_line(details or code.name.lower())
    if code is grpc.StatusCode.UNAVAILABLE:
        return CliError(f"cannot reach controller at {conn.target} ({details})", EXIT_UNREACHABLE)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(
            f"controller at {conn.target} did not answer within {conn.timeout:g}s ({details})",
            EXIT_UNREACHABLE,
        )
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
        return CliError(
            f"{code.name}: {details} (check --token-file or the client certificate)",
            EXIT_REFUSED,
        )
    if code in _REFUSED_CODES:
        return CliError(f"{code.name}: {details}", EXIT_REFUSED)
    return CliError(f"controller error {code.name}: {details}", EXIT_ERROR)




class ProgressView(Protocol):
    """A live progress display for a streamed call (rich progress bars on stderr)."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> Any: ...

    def update(self, progress: Any) -> None: ...


class StreamCall(Protocol):
    """A server-streamed call whose updates carry a `progress` or a `result` body."""

    def __iter__(self) -> Iterator[Any]: ...

    def cancel(self) -> bool: ...


def follow_stream(call: StreamCall, make_view: Any, show_progress: bool, what: str) -> Any:
    """Feed `progress` updates to a view (when stderr is a terminal) and return the `result`.
    `make_view(console)` builds the view; `what` names the call in the error when the stream
    ends without a result."""
    err = Console(stderr=True)
    view: ProgressView | None = make_view(err) if show_progress and err.is_terminal else None
    try:
        if view is not None:
            view.__enter__()
        for update in call:
            body = update.WhichOneof("body")
            if body == "progress" and view is not None:
                view.update(update.progress)
            elif body == "result":
                return update.result
    finally:
        if view is not None:
            view.__exit__(None, None, None)
        call.cancel()
    raise CliError(f"the controller ended the {what} stream without a result", EXIT_ERROR)
