"""Validate a controller Directive and turn it into the agent's `Directive` (pure).

The controller is trusted to be the controller, not to be bug-free: every field is checked for
what would make the agent do something wrong or crash (empty ids, no kind or a kind this agent
does not know, negative counts, non-finite times, ranks outside the world). A refusal is a
`DirectiveError` naming the directive and the reason, which goes back as a failed result.
"""

from __future__ import annotations

import math

from agent.link.types import (
    CheckNow,
    Directive,
    DirectiveError,
    DirectiveKind,
    RankAssignment,
    RunBurnIn,
    SetDrain,
    StartRanks,
    StopRanks,
)
from protos.gpufleet.v1 import fleet_pb2

MAX_ID_CHARS = 256
MAX_WINDOW_S = 3600.0
MAX_TIMEOUT_S = 7 * 86400.0
MAX_SIZES = 64
MAX_MAP_ENTRIES = 64
BURNIN_BACKENDS = frozenset({"", "nccl", "gloo", "nccl-tests"})


class _Checker:
    def __init__(self, directive_id: str) -> None:
        self.id = directive_id

    def require(self, ok: bool, reason: str) -> None:
        if not ok:
            raise DirectiveError(self.id, reason)

    def text(self, value: str, name: str) -> str:
        self.require(value != "", f"{name} is empty")
        self.require(len(value) <= MAX_ID_CHARS, f"{name} is longer than {MAX_ID_CHARS} chars")
        return value

    def seconds(self, value: float, name: str, high: float, *, positive: bool = False) -> float:
        self.require(math.isfinite(value), f"{name} is not finite: {value}")
        low_ok = value > 0 if positive else value >= 0
        self.require(low_ok and value <= high, f"{name} out of range: {value}")
        return value

    def count(self, value: int, name: str, low: int, high: int) -> int:
        self.require(low <= value <= high, f"{name} must be in [{low}, {high}], got {value}")
        return value

    def port(self, value: int) -> int:
        return self.count(value, "master_port", 0, 65535)


def _check_now(c: _Checker, msg: fleet_pb2.CheckNow) -> CheckNow:
    return CheckNow(window_s=c.seconds(msg.window_s, "window_s", MAX_WINDOW_S))


def _run_burnin(c: _Checker, msg: fleet_pb2.RunBurnIn) -> RunBurnIn:
    c.require(len(msg.sizes_bytes) <= MAX_SIZES, f"more than {MAX_SIZES} sizes")
    c.require(all(s > 0 for s in msg.sizes_bytes), "sizes must be positive")
    c.require(msg.backend in BURNIN_BACKENDS, f"unknown burn-in backend {msg.backend!r}")
    c.require(len(msg.options) <= MAX_MAP_ENTRIES, f"more than {MAX_MAP_ENTRIES} options")
    world = c.count(msg.world_size, "world_size", 1, 1 << 20)
    local = c.count(msg.local_ranks, "local_ranks", 1, 1024)
    offset = c.count(msg.rank_offset, "rank_offset", 0, world - 1)
    c.require(offset + local <= world, f"ranks {offset}..{offset + local - 1} exceed world {world}")
    return RunBurnIn(
        burnin_id=c.text(msg.burnin_id, "burnin_id"),
        sizes_bytes=tuple(msg.sizes_bytes),
        warmup_iters=c.count(msg.warmup_iters, "warmup_iters", 0, 1_000_000),
        iters=c.count(msg.iters, "iters", 0, 1_000_000),
        world_size=world,
        rank_offset=offset,
        local_ranks=local,
        master_addr=msg.master_addr,
        master_port=c.port(msg.master_port),
        timeout_s=c.seconds(msg.timeout_s, "timeout_s", MAX_TIMEOUT_S, positive=True),
        backend=msg.backend,
        options=dict(msg.options),
    )


def _start_ranks(c: _Checker, msg: fleet_pb2.StartRanks) -> StartRanks:
    world = c.count(msg.world_size, "world_size", 1, 1 << 20)
    c.require(len(msg.argv) > 0, "argv is empty")
    c.require(len(msg.ranks) > 0, "no ranks assigned")
    c.require(len(msg.env) <= 4 * MAX_MAP_ENTRIES, "too many environment variables")
    ranks = tuple(
        RankAssignment(
            rank=c.count(r.rank, "rank", 0, world - 1),
            local_rank=c.count(r.local_rank, "local_rank", 0, 1023),
            gpu=c.count(r.gpu, "gpu", 0, 1023),
            rail=r.rail,
        )
        for r in msg.ranks
    )
    c.require(len({r.rank for r in ranks}) == len(ranks), "a rank is assigned twice")
    c.require(len({r.local_rank for r in ranks}) == len(ranks), "a local rank is assigned twice")
    return StartRanks(
        run_id=c.text(msg.run_id, "run_id"),
        attempt=c.count(msg.attempt, "attempt", 0, 1 << 30),
        argv=tuple(msg.argv),
        env=dict(msg.env),
        master_addr=msg.master_addr,
        master_port=c.port(msg.master_port),
        world_size=world,
        ranks=ranks,
        workdir=msg.workdir,
    )


def _stop_ranks(c: _Checker, msg: fleet_pb2.StopRanks) -> StopRanks:
    return StopRanks(
        run_id=c.text(msg.run_id, "run_id"),
        attempt=c.count(msg.attempt, "attempt", 0, 1 << 30),
        grace_s=c.seconds(msg.grace_s, "grace_s", MAX_TIMEOUT_S),
    )


def _set_drain(c: _Checker, msg: fleet_pb2.SetDrain) -> SetDrain:
    return SetDrain(drained=msg.drained, reason=msg.reason)


def directive_from_proto(msg: fleet_pb2.Directive) -> Directive:
    """The validated directive, or DirectiveError (no id, no/unknown kind, bad values)."""
    c = _Checker(msg.id[:MAX_ID_CHARS])
    c.text(msg.id, "directive id")
    c.require(math.isfinite(msg.issued_at), "issued_at is not finite")
    which = msg.WhichOneof("kind")
    kind: DirectiveKind
    if which == "check_now":
        kind = _check_now(c, msg.check_now)
    elif which == "run_burnin":
        kind = _run_burnin(c, msg.run_burnin)
    elif which == "start_ranks":
        kind = _start_ranks(c, msg.start_ranks)
    elif which == "stop_ranks":
        kind = _stop_ranks(c, msg.stop_ranks)
    elif which == "set_drain":
        kind = _set_drain(c, msg.set_drain)
    else:  # unset, or a kind from a newer controller that this agent's contract lacks
        raise DirectiveError(c.id, "no directive kind this agent understands")
    return Directive(id=msg.id, issued_at=msg.issued_at, kind=kind)
