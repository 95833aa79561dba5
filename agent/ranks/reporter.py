"""Rank-side progress reporting: one small JSON datagram per training step to the node agent.

Stdlib only and importable on its own (no torch, no other gpufleet module), so any training
script can use it. The launcher (the node agent, or the Slurm batch script that points each
rank at its node's agent) sets:

- `GPUFLEET_PROGRESS_SOCKET`: path of the agent's unix datagram socket (absent: reporting is off);
- `GPUFLEET_RUN_ID`: the run's id; `GPUFLEET_ATTEMPT`: the restart attempt (int >= 0);
- the usual `RANK` and `LOCAL_RANK`.

Reporting never blocks and never raises into training: when the agent is away, slow or gone the
datagram is dropped and counted. Wire format (one JSON object per datagram, at most
`MAX_DATAGRAM_BYTES`)::

    {"v": 1, "run_id": str, "attempt": int, "rank": int, "local_rank": int, "step": int,
     "loss": float | null, "step_time_s": float, "tokens": int, "pid": int, "ts": float}

`loss` is null when the loss was not finite (NaN or inf), since strict JSON has no spelling for
those; `ts` is the sender's wall clock in seconds.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Mapping

ENV_SOCKET = "GPUFLEET_PROGRESS_SOCKET"
ENV_RUN_ID = "GPUFLEET_RUN_ID"
ENV_ATTEMPT = "GPUFLEET_ATTEMPT"
WIRE_VERSION = 1
MAX_DATAGRAM_BYTES = 2048
MAX_RUN_ID_CHARS = 128


class ReporterConfigError(ValueError):
    """The launcher set a malformed reporting environment variable."""


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ReporterConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ReporterConfigError(f"{name} must be >= 0, got {value}")
    return value


class ProgressReporter:
    """Sends one progress datagram per `report()`; a reporter without a socket path is a no-op."""

    def __init__(
        self,
        socket_path: str | None,
        *,
        run_id: str = "",
        attempt: int = 0,
        rank: int = 0,
        local_rank: int = 0,
    ) -> None:
        if len(run_id) > MAX_RUN_ID_CHARS:
            raise ReporterConfigError(f"run id longer than {MAX_RUN_ID_CHARS} characters")
        self.socket_path = socket_path or None
        self.run_id = run_id
        self.attempt = attempt
        self.rank = rank
        self.local_rank = local_rank
        self.sent = 0
        self.dropped = 0
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProgressReporter:
        """A reporter configured from the launcher's environment (raises ReporterConfigError)."""
        env = os.environ if environ is None else environ
        return cls(
            env.get(ENV_SOCKET) or None,
            run_id=env.get(ENV_RUN_ID, ""),
            attempt=_env_int(env, ENV_ATTEMPT, 0),
            rank=_env_int(env, "RANK", 0),
            local_rank=_env_int(env, "LOCAL_RANK", 0),
        )

    @property
    def enabled(self) -> bool:
        """True when a socket path was configured."""
        return self.socket_path is not None

    def encode(self, step: int, loss: float, step_time_s: float, tokens: int) -> bytes:
        """The datagram `report` would send (exposed for tests and other senders)."""
        loss_value = float(loss)
        record = {
            "v": WIRE_VERSION,
            "run_id": self.run_id,
            "attempt": self.attempt,
            "rank": self.rank,
            "local_rank": self.local_rank,
            "step": int(step),
            "loss": loss_value if math.isfinite(loss_value) else None,
            "step_time_s": float(step_time_s),
            "tokens": int(tokens),
            "pid": os.getpid(),
            "ts": time.time(),
        }
        return json.dumps(record, separators=(",", ":"), allow_nan=False).encode()

    def report(self, step: int, loss: float, step_time_s: float, tokens: int) -> bool:
        """Send one record; True when the datagram left, False when it was dropped. Never raises."""
        if self.socket_path is None:
            return False
        try:
            data = self.encode(step, loss, step_time_s, tokens)
            if len(data) > MAX_DATAGRAM_BYTES:
                self.dropped += 1
                return False
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(data, self.socket_path)
        except (OSError, ValueError, TypeError, OverflowError):
            # Agent away (no such socket), gone (refused), or slow (buffer full): drop it.
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        """Release the socket; later reports open a new one."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
