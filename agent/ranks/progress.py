"""Agent side of rank progress: a unix datagram socket that collects what ranks report.

Ranks send with `agent.ranks.reporter.ProgressReporter`: the agent's own ranks, and ranks it did
not start (a Slurm job's, reporting to the agent's standing socket). Every datagram is untrusted
input: each is bounded in size, parsed as strict JSON and checked field by field (the run id is
1..128 printable ASCII characters); a bad one is counted (by reason) and dropped, and never stops
the receiver. With `senders` (`agent.ranks.senders.SenderPins`) a record for a run id from
another local user than the one that reported for it first is refused too. The listener keeps
the newest record per (run_id, rank) and a bounded history of recent ones.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.ranks.reporter import MAX_DATAGRAM_BYTES, MAX_RUN_ID_CHARS, WIRE_VERSION
from agent.ranks.senders import SenderPins
from agent.ranks.unix_socket import (
    CRED_SPACE,
    MAX_UNIX_PATH_BYTES,
    PASSCRED,
    ProgressListenerError as ProgressListenerError,
    claim_socket_path,
    sender_credentials,
)
from gpufleet_common.clock import Clock, SystemClock

MAX_LATEST = 16_384  # (run id, rank) pairs kept by latest(); the longest silent go first
_MAX_COUNT = 2**53  # steps, tokens, ranks: any JSON integer a float can hold exactly
_MAX_PID = 2**31 - 1
_MAX_STEP_TIME_S = 1e7
REQUIRED_FIELDS = (
    "v", "run_id", "attempt", "rank", "local_rank", "step", "loss", "step_time_s", "tokens",
    "pid", "ts",
)  # fmt: skip


class InvalidProgress(ValueError):
    """A datagram that is not a valid progress record; `reason` is a short stable label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RankProgress:
    """One validated progress record. `received_at` is the listener's monotonic clock;
    `sender_pid`/`sender_uid` are what the kernel says about the sender (Linux SO_PASSCRED, in
    the listener's PID namespace, so they can differ from the self-reported `pid` of a rank in
    a container), None where unavailable."""

    run_id: str
    attempt: int
    rank: int
    local_rank: int
    step: int
    loss: float | None
    step_time_s: float
    tokens: int
    pid: int
    ts: float
    received_at: float
    sender_pid: int | None = None
    sender_uid: int | None = None


@dataclass(frozen=True, slots=True)
class ListenerStats:
    """Counters since the listener started."""

    valid: int
    invalid: int
    invalid_by_reason: Mapping[str, int]
    callback_errors: int


def _reject_constant(name: str) -> Any:
    raise InvalidProgress("bad_json", f"non-finite constant {name}")


def _int_field(obj: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidProgress("bad_field", f"{key} must be an integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidProgress("bad_field", f"{key}={value} outside [{low}, {high}]")
    return value


def _float_field(obj: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidProgress("bad_field", f"{key} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidProgress("bad_field", f"{key}={number} outside [{low}, {high}]")
    return number


def valid_run_id(run_id: str) -> bool:
    """A run id as it may appear on the wire: 1..128 printable ASCII characters."""
    return 0 < len(run_id) <= MAX_RUN_ID_CHARS and all(" " <= ch <= "~" for ch in run_id)


def parse_progress(
    data: bytes, received_at: float, sender: tuple[int, int] | None = None
) -> RankProgress:
    """Validate one datagram into a RankProgress (raises InvalidProgress with a reason)."""
    if len(data) > MAX_DATAGRAM_BYTES:
        raise InvalidProgress("too_large", f"{len(data)} bytes > {MAX_DATAGRAM_BYTES}")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidProgress("bad_json", str(exc)) from None
    if not isinstance(obj, dict):
        raise InvalidProgress("bad_json", f"top level is {type(obj).__name__}, not an object")
    missing = [key for key in REQUIRED_FIELDS if key not in obj]
    if missing:
        raise InvalidProgress("missing_field", ", ".join(missing))
    version = obj.get("v")
    if isinstance(version, bool) or version != WIRE_VERSION:
        raise InvalidProgress("bad_version", f"v={version!r}, expected {WIRE_VERSION}")
    run_id = obj.get("run_id")
    if not isinstance(run_id, str) or not valid_run_id(run_id):
        raise InvalidProgress("bad_field", "run_id must be 1..128 printable ASCII characters")
    loss = None if obj["loss"] is None else _float_field(obj, "loss", -math.inf, math.inf)
    return RankProgress(
        run_id=run_id,
        attempt=_int_field(obj, "attempt", 0, _MAX_COUNT),
        rank=_int_field(obj, "rank", 0, _MAX_COUNT),
        local_rank=_int_field(obj, "local_rank", 0, _MAX_COUNT),
        step=_int_field(obj, "step", 0, _MAX_COUNT),
        loss=loss,
        step_time_s=_float_field(obj, "step_time_s", 0.0, _MAX_STEP_TIME_S),
        tokens=_int_field(obj, "tokens", 0, _MAX_COUNT),
        pid=_int_field(obj, "pid", 1, _MAX_PID),
        ts=_float_field(obj, "ts", 0.0, math.inf),
        received_at=received_at,
        sender_pid=sender[0] if sender else None,
        sender_uid=sender[1] if sender else None,
    )


class ProgressListener:
    """Binds `path` and receives progress datagrams on a daemon thread until `stop()`.

    `on_record` runs on the receiver thread for every valid record; its exceptions are counted
    and swallowed. `history` bounds the recent-records ring. The socket file gets `socket_mode`
    and, with `socket_group` (a gid), that group; `senders` refuses records for a run id from a
    user other than its first reporter.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        on_record: Callable[[RankProgress], None] | None = None,
        history: int = 1024,
        clock: Clock | None = None,
        socket_mode: int = 0o600,
        socket_group: int | None = None,
        senders: SenderPins | None = None,
        poll_interval_s: float = 0.1,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        if not 0 < poll_interval_s <= 5:
            raise ValueError(f"poll_interval_s must be in (0, 5], got {poll_interval_s}")
        self.path = Path(path)
        if len(os.fsencode(self.path)) > MAX_UNIX_PATH_BYTES:
            raise ProgressListenerError(f"socket path longer than {MAX_UNIX_PATH_BYTES} bytes")
        self._on_record = on_record
        self._senders = senders
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._latest: dict[tuple[str, int], RankProgress] = {}
        self._recent: deque[RankProgress] = deque(maxlen=history)
        self._valid = 0
        self._invalid: Counter[str] = Counter()
        self._callback_errors = 0
        self._stopping = threading.Event()
        claim_socket_path(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            if PASSCRED is not None:
                sock.setsockopt(socket.SOL_SOCKET, PASSCRED, 1)
            sock.bind(str(self.path))
            if socket_group is not None:
                os.chown(self.path, -1, socket_group)
            os.chmod(self.path, socket_mode)
            self._inode = self.path.stat().st_ino
            sock.settimeout(poll_interval_s)
        except OSError as exc:
            sock.close()
            raise ProgressListenerError(f"cannot bind progress socket {self.path}: {exc}") from exc
        self._sock = sock
        self._thread = threading.Thread(
            target=self._run, name=f"progress-listener:{self.path.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                data, ancillary, _flags, _addr = self._sock.recvmsg(
                    MAX_DATAGRAM_BYTES + 1, CRED_SPACE
                )
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                continue
            self.feed(data, sender_credentials(ancillary))

    def feed(self, data: bytes, sender: tuple[int, int] | None = None) -> RankProgress | None:
        """Validate and record one datagram as if received from `sender` (pid, uid); returns
        the record, or None when it was invalid."""
        try:
            record = parse_progress(data, self._clock.monotonic(), sender)
        except InvalidProgress as exc:
            with self._lock:
                self._invalid[exc.reason] += 1
            return None
        with self._lock:
            refused = (self._senders.check(record.run_id, record.sender_uid, record.sender_pid)
                       if self._senders is not None else None)
            if refused is not None:
                self._invalid[refused] += 1
                return None
            self._valid += 1
            self._recent.append(record)
            key = (record.run_id, record.rank)
            previous = self._latest.pop(key, None)  # re-inserted: the dict is oldest-first
            self._latest[key] = (record if previous is None or record.attempt >= previous.attempt
                                 else previous)
            if len(self._latest) > MAX_LATEST:  # bounded whatever a sender invents
                del self._latest[next(iter(self._latest))]
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception:
                with self._lock:
                    self._callback_errors += 1
        return record

    def latest(self) -> dict[tuple[str, int], RankProgress]:
        """Snapshot: the newest record per (run_id, rank); a newer attempt replaces an older one."""
        with self._lock:
            return dict(self._latest)

    def recent(self, limit: int | None = None) -> list[RankProgress]:
        """Snapshot of the recent records, oldest first (at most `limit`)."""
        with self._lock:
            records = list(self._recent)
        return records if limit is None else records[-limit:] if limit > 0 else []

    def stats(self) -> ListenerStats:
        """Counters of valid and invalid datagrams and failed callbacks."""
        with self._lock:
            return ListenerStats(
                valid=self._valid,
                invalid=sum(self._invalid.values()),
                invalid_by_reason=dict(self._invalid),
                callback_errors=self._callback_errors,
            )

    @property
    def running(self) -> bool:
        """True while the receiver thread is alive."""
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop receiving, close and unlink the socket; True when the thread ended in time."""
        self._stopping.set()
        self._thread.join(timeout_s)
        self._sock.close()
        with contextlib.suppress(OSError):
            if self.path.lstat().st_ino == self._inode:
                self.path.unlink()
        return not self._thread.is_alive()

    def __enter__(self) -> ProgressListener:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
