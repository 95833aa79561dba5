"""Who may report progress for a run on this node: the first local user that reports for a run
id owns it.

The agent's standing progress socket also takes reports from ranks it did not start (Slurm
starts them, as the job's user), so nothing tells the agent in advance which user a run belongs
to. The kernel does tell it who sent each datagram (SO_PASSCRED: the sender's uid). The rule:

- the first valid record for a run id pins that run id to its sender's uid;
- a later record for the same run id from another uid is refused (reason `foreign_sender`),
  counted, and logged once per (run id, uid) at WARNING with the sender's pid and uid;
- root gets no exemption (ranks the agent starts run as the agent's user and pin like others);
- a record without credentials (no SO_PASSCRED on this platform) cannot be checked and passes.

So once a run's ranks have reported, another local user cannot feed progress into that run,
and so cannot keep a hung run looking alive, nor take it over by flooding the table with new
run ids: a pin is forgotten only after `idle_s` without a report from its owner, and while the
table is full of live pins a new run id is refused (reason `too_many_runs`) rather than
pushing one out. The gap: a user who reports first for a run id
that the node has not seen yet owns it instead. That is not prevented, but it is not silent:
every refused real rank is logged with its uid and pid. The socket's file mode (0660, group
chosen by the operator) bounds who can send at all.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger(__name__)

FOREIGN_SENDER = "foreign_sender"
TOO_MANY_RUNS = "too_many_runs"


class SenderPins:
    """Pins each run id to the uid that first reported for it (at most `max_runs`; a pin idle
    for `idle_s` may make room for a new run id). Not thread-safe: the listener calls it under
    its lock."""

    def __init__(self, max_runs: int = 4096, max_warnings: int = 4096, idle_s: float = 3600.0,
                 now: Callable[[], float] = time.monotonic) -> None:
        if max_runs < 1 or max_warnings < 0 or not idle_s > 0:
            raise ValueError("max_runs must be >= 1, max_warnings >= 0 and idle_s > 0")
        self._owners: OrderedDict[str, tuple[int, float]] = OrderedDict()  # oldest use first
        self._warned: set[tuple[str, int]] = set()
        self._max_runs = max_runs
        self._max_warnings = max_warnings
        self._idle_s = idle_s
        self._now = now

    def owner(self, run_id: str) -> int | None:
        """The uid that owns `run_id` here, or None before its first report."""
        pin = self._owners.get(run_id)
        return pin[0] if pin is not None else None

    def check(self, run_id: str, uid: int | None, pid: int | None = None) -> str | None:
        """None when a record for `run_id` from `uid` is admitted (pinning the run id on first
        sight); otherwise the refusal reason, logged once per (run id, uid)."""
        if uid is None:
            return None
        now = self._now()
        pin = self._owners.get(run_id)
        if pin is None:
            if len(self._owners) >= self._max_runs:
                oldest, (_, seen) = next(iter(self._owners.items()))
                if now - seen < self._idle_s:
                    self._warn(run_id, uid, pid, "the pin table is full of live runs")
                    return TOO_MANY_RUNS
                del self._owners[oldest]
            self._owners[run_id] = (uid, now)
            return None
        owner = pin[0]
        if owner != uid:
            self._warn(run_id, uid, pid, f"uid {owner} reported for this run first")
            return FOREIGN_SENDER
        self._owners[run_id] = (uid, now)  # only the owner's reports keep a pin alive
        self._owners.move_to_end(run_id)
        return None

    def _warn(self, run_id: str, uid: int, pid: int | None, why: str) -> None:
        key = (run_id, uid)
        if key not in self._warned and len(self._warned) < self._max_warnings:
            self._warned.add(key)
            log.warning("progress for run %r from uid %d (pid %s) refused: %s", run_id, uid,
                        pid, why)
