"""Agent-side types for what crosses the controller link and is not already in `agent.model`.

Outgoing: `NodeIdentity` (the Hello facts), `RankExit`, `DirectiveResult`. Incoming: `Directive`
and its five kinds, already validated (see `agent.link.directives`). All frozen; no protobuf here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.burnin.spec import BurnInResult
from agent.model import GpuSample, IbPort

# ---------------------------------------------------------------- agent -> controller


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who this node is, as told to the controller in every Hello.

    `rails` maps a GPU index to its NIC rail `"<device>/<port>"` (PCIe affinity); each of
    `ib_ports` becomes one NicRail, tagged with the lowest GPU index whose rail it is.
    """

    node: str
    hostname: str
    agent_version: str = ""
    sku: str = ""
    driver_version: str = ""
    cuda_driver_version: str = ""
    gpus: tuple[GpuSample, ...] = ()
    nvlink_domain: str = ""  # the node name when the node has no NVLink fabric
    rack: str = ""
    ib_ports: tuple[IbPort, ...] = ()
    rails: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RankExit:
    """A training rank this agent started has ended. `exit_code` < 0: killed by signal -N."""

    run_id: str
    attempt: int
    rank: int
    exit_code: int
    at: float
    reason: str = "exited"  # "exited", "stopped", "timeout", ...
    stderr_tail: str = ""


class ProgressRecord(Protocol):
    """One training step of one rank (`agent.ranks.progress.RankProgress` fits)."""

    @property
    def run_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def rank(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def loss(self) -> float | None: ...
    @property
    def step_time_s(self) -> float: ...
    @property
    def tokens(self) -> int: ...
    @property
    def ts(self) -> float: ...


@dataclass(frozen=True, slots=True)
class DirectiveResult:
    """The answer to a directive (every kind but CheckNow, which is answered by a Report)."""

    directive_id: str
    ok: bool
    message: str = ""
    burnin: BurnInResult | None = None
    burnin_id: str = ""


# ---------------------------------------------------------------- controller -> agent


@dataclass(frozen=True, slots=True)
class CheckNow:
    """Sweep now (watching `window_s` first) and answer with a Report carrying the directive id."""

    window_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RunBurnIn:
    """Run an all-reduce burn-in as `local_ranks` ranks starting at global `rank_offset`."""

    burnin_id: str
    sizes_bytes: tuple[int, ...]
    warmup_iters: int
    iters: int
    world_size: int
    rank_offset: int
    local_ranks: int
    master_addr: str
    master_port: int
    timeout_s: float
    backend: str = ""  # "" = auto
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RankAssignment:
    """One rank placed on this node."""

    rank: int
    local_rank: int
    gpu: int
    rail: str = ""


@dataclass(frozen=True, slots=True)
class StartRanks:
    """Start this node's ranks of a training run."""

    run_id: str
    attempt: int
    argv: tuple[str, ...]
    env: Mapping[str, str]
    master_addr: str
    master_port: int
    world_size: int
    ranks: tuple[RankAssignment, ...]
    workdir: str = ""


@dataclass(frozen=True, slots=True)
class StopRanks:
    """Stop a run's ranks (`attempt` 0 = every attempt), SIGKILL after `grace_s`."""

    run_id: str
    attempt: int
    grace_s: float


@dataclass(frozen=True, slots=True)
class SetDrain:
    """The controller took this node out of (or back into) service."""

    drained: bool
    reason: str = ""


DirectiveKind = CheckNow | RunBurnIn | StartRanks | StopRanks | SetDrain


@dataclass(frozen=True, slots=True)
class Directive:
    """A validated instruction from the controller."""

    id: str
    issued_at: float
    kind: DirectiveKind


class DirectiveError(ValueError):
    """A directive from the controller that this agent refuses (unknown kind, bad values)."""

    def __init__(self, directive_id: str, reason: str) -> None:
        super().__init__(f"directive {directive_id or '<no id>'}: {reason}")
        self.directive_id = directive_id
        self.reason = reason
