"""Who is calling: mTLS credentials, node identity from the client certificate, operator tokens.

- Nodes: with TLS every client presents a certificate signed by the fleet CA; the node's
  identity is the certificate's CN. Without TLS (loopback only) it is the Hello's node.
- Operators: admin calls carry `authorization: Bearer <token>`; tokens come from a file with
  one `NAME TOKEN` (or bare `TOKEN`) per line, compared in constant time. Without a token file,
  TLS admin calls need a certificate whose CN starts with "operator:".
"""

from __future__ import annotations

import hmac
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

OPERATOR_CN_PREFIX = "operator:"
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for the controller's side of mTLS."""

    cert: Path
    key: Path
    ca: Path


def server_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate signed by `tls.ca`."""
    return grpc.ssl_server_credentials(
        [(tls.key.read_bytes(), tls.cert.read_bytes())],
        root_certificates=tls.ca.read_bytes(),
        require_client_auth=True,
    )


def peer_common_name(auth_context: Mapping[str, Iterable[bytes]]) -> str | None:
    """The CN of the verified client certificate, or None on an insecure channel."""
    first = next(iter(auth_context.get("x509_common_name") or ()), None)
    return None if first is None else first.decode("utf-8", errors="replace")


class AuthError(Exception):
    """The caller is not allowed; `code` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OperatorTokens:
    """Operator bearer tokens, by operator name."""

    def __init__(self, tokens: Mapping[str, bytes]) -> None:
        self._tokens = dict(tokens)

    @classmethod
    def parse(cls, text: str, source: str = "token file") -> OperatorTokens:
        """Parse token-file text; raise ValueError listing every problem."""
        tokens: dict[str, bytes] = {}
        problems: list[str] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) == 1:
                name, token = f"token{number}", parts[0]
            elif len(parts) == 2:
                name, token = parts
            else:
                problems.append(f"{source}:{number}: expected 'NAME TOKEN' or 'TOKEN'")
                continue
            if len(token) < MIN_TOKEN_LENGTH:
                problems.append(
                    f"{source}:{number}: token for {name!r} is shorter than "
                    f"{MIN_TOKEN_LENGTH} characters"
                )
            if name in tokens:
                problems.append(f"{source}:{number}: operator {name!r} appears twice")
            tokens[name] = token.encode()
        if not tokens and not problems:
            problems.append(f"{source}: no tokens")
        if problems:
            raise ValueError("; ".join(problems))
        return cls(tokens)

    @classmethod
    def load(cls, path: Path) -> OperatorTokens:
        """Read a token file; refuse one that other users can read."""
        mode = path.stat().st_mode
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            raise ValueError(f"{path} is accessible by other users; chmod 600 it")
        return cls.parse(path.read_text(), str(path))

    def operator_for(self, candidate: str) -> str | None:
        """The operator whose token `candidate` is, comparing every token in constant time."""
        given = candidate.encode()
        found: str | None = None
        for name, token in self._tokens.items():
            if hmac.compare_digest(given, token):
                found = name
        return found


def bearer_token(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The token of an `authorization: Bearer <token>` metadata entry, if any."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode() if isinstance(value, bytes) else value
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


@dataclass(frozen=True)
class AdminAuth:
    """Decides whether an admin call may proceed, and names its actor."""

    tokens: OperatorTokens | None
    tls: bool

    def authenticate(
        self,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        auth_context: Mapping[str, Iterable[bytes]],
    ) -> str:
        """The actor ("operator:NAME") for this call; raise AuthError when not allowed."""
        if self.tokens is not None:
            token = bearer_token(metadata)
            if token is None:
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED,
                                "admin calls need 'authorization: Bearer <token>' metadata")
            name = self.tokens.operator_for(token)
            if name is None:
                raise AuthError(grpc.StatusCode.UNAUTHENTICATED, "unknown operator token")
            return f"operator:{name}"
        if self.tls:
            cn = peer_common_name(auth_context) or ""
            if not cn.startswith(OPERATOR_CN_PREFIX):
                raise AuthError(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"admin calls need an operator certificate (CN {OPERATOR_CN_PREFIX}NAME)",
                )
            return cn
        return "operator:local"
