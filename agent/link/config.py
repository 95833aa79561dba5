"""Settings of the controller link: timing, bounds and TLS material (no gRPC here)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Timing and bounds of the link. Defaults suit a daemon; tests shrink the times."""

    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    healthy_after_s: float = 10.0  # a connection this old resets the backoff
    welcome_timeout_s: float = 10.0
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    max_message_bytes: int = 4 << 20  # the controller's transport limit
    send_batch: int = 256  # spooled messages per pass before ephemeral ones get a turn
    ephemeral_queue: int = 256  # progress ticks waiting to be sent; more are dropped
    directive_workers: int = 4
    max_pending_directives: int = 32  # running or queued handlers; more are refused "busy"
    close_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ValueError("need 0 < backoff_base_s <= backoff_cap_s")
        for name in ("welcome_timeout_s", "keepalive_time_s", "keepalive_timeout_s",
                     "close_timeout_s"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("max_message_bytes", "send_batch", "ephemeral_queue", "directive_workers",
                     "max_pending_directives"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM material for mTLS: the CA that signed the controller, and this node's cert and key."""

    ca_pem: bytes
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    server_name: str | None = None  # override the name checked against the controller's cert

    def __post_init__(self) -> None:
        if (self.cert_pem is None) != (self.key_pem is None):
            raise ValueError("a client certificate needs its key, and a key its certificate")

    @classmethod
    def from_files(
        cls,
        ca: str | os.PathLike[str],
        cert: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
        server_name: str | None = None,
    ) -> TlsConfig:
        """Read the PEM files (OSError names the file that could not be read)."""
        return cls(
            ca_pem=Path(ca).read_bytes(),
            cert_pem=Path(cert).read_bytes() if cert is not None else None,
            key_pem=Path(key).read_bytes() if key is not None else None,
            server_name=server_name,
        )
