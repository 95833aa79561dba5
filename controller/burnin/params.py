"""A BurninRequest checked and filled in with the controller's defaults (pure).

Every problem of a request is reported at once, in one `BurninRequestError`. Sizes use the
agent worker's grammar, the one in `gpufleet_common.sizes` (a comma list such as `1M,16M,64MiB`,
or a doubling range `MIN:MAX`; binary units).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controller.burnin.groups import DEFAULT_PORT_BASE, MAX_RANKS_PER_NODE
from gpufleet_common.sizes import MAX_SIZES, parse_sizes
from protos.gpufleet.v1 import fleet_pb2

MAX_OPTIONS = 64
MAX_ITERS = 1_000_000
MAX_REPEATS = 32
MAX_TIMEOUT_S = 7 * 86400.0
_OPTION_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class BurninRequestError(ValueError):
    """An invalid request; `problems` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid burn-in request: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class BurninDefaults:
    """What a request leaving a field at 0 gets, and the controller's own bounds."""

    sizes: tuple[int, ...] = (1 << 20, 16 << 20, 64 << 20)
    iters: int = 20
    warmup_iters: int = 5
    timeout_s: float = 300.0
    #: beyond a burn-in's timeout, how long to wait for its answer (the agent kills the
    #: workers at the timeout, then sends the result) before calling it timed out
    answer_grace_s: float = 30.0
    port_base: int = DEFAULT_PORT_BASE
    #: at most this many directives in flight even when a request says "all at once"
    max_in_flight: int = 4096
    #: where multi-node groups rendezvous; None: loopback for a one-host group, else the
    #: first member's hostname
    rendezvous_host: str | None = None


@dataclass(frozen=True)
class BurninParams:
    """A valid request with every default applied."""

    nodes: tuple[str, ...]  # empty with `all_nodes`
    all_nodes: bool
    sizes: tuple[int, ...]  # as sent to the agents: the largest repeated at the end
    iters: int
    warmup_iters: int
    timeout_s: float
    answer_grace_s: float
    multi_node: bool  # NVLink-domain groups after the single-node pass
    ranks_per_node: int  # 0 = one rank per GPU
    max_parallel: int  # >= 1
    port_base: int
    rendezvous_host: str | None = None
    #: pairs across NVLink domains over the scale-out rails after the domain groups (it
    #: implies `multi_node`: only nodes that passed both earlier passes are paired)
    cross_domain: bool = False
    node_options: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: MappingProxyType({}))
    #: > 0: single nodes are also judged against the fleet's passing verdicts of at most this
    #: age (`baseline`), so a few nodes burned in alone still have a cohort (preflight's
    #: re-test sets it; a `gpufleet burnin` request judges its nodes among themselves)
    baseline_age_s: float = 0.0

    def options_for(self, node: str) -> Mapping[str, str]:
        """The worker options (test knobs) of one node."""
        return self.node_options.get(node, {})


def parse_options(text: str) -> dict[str, str]:
    """Worker options 'key=value;key=value' -> dict; ValueError naming the bad item."""
    out: dict[str, str] = {}
    for item in text.split(";"):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not _OPTION_KEY_RE.match(key):
            raise ValueError(f"option {item.strip()!r} is not key=value")
        out[key] = value.strip()
    if len(out) > MAX_OPTIONS:
        raise ValueError(f"more than {MAX_OPTIONS} options")
    return out


def with_repeats(sizes: tuple[int, ...], repeats: int) -> tuple[int, ...]:
    """The sweep with the largest size measured `repeats` times in all (at the end)."""
    return sizes + (max(sizes),) * max(0, repeats - 1) if sizes else sizes


def params_from_request(
    request: fleet_pb2.BurninRequest, defaults: BurninDefaults = BurninDefaults()
) -> BurninParams:
    """Check `request` and apply `defaults`; raises BurninRequestError with every problem."""
    problems: list[str] = []
    nodes = tuple(dict.fromkeys(request.nodes))
    if request.all and nodes:
        problems.append("name nodes or set all, not both")
    if not request.all and not nodes:
        problems.append("name the nodes to burn in, or set all")
    sizes = defaults.sizes
    if request.sizes.strip():
        try:
            sizes = parse_sizes(request.sizes)
        except ValueError as err:
            problems.append(f"sizes: {err}")
    if len(sizes) > MAX_SIZES:
        problems.append(f"sizes: more than {MAX_SIZES}")
    for name, value in (("iters", request.iters), ("warmup_iters", request.warmup_iters)):
        if not 0 <= value <= MAX_ITERS:
            problems.append(f"{name} must be 0..{MAX_ITERS} (0 = default), got {value}")
    timeout = request.timeout_s
    if not math.isfinite(timeout) or not 0 <= timeout <= MAX_TIMEOUT_S:
        problems.append(f"timeout_s must be 0..{MAX_TIMEOUT_S:.0f} (0 = default), got {timeout}")
    if not 0 <= request.ranks_per_node <= MAX_RANKS_PER_NODE:
        problems.append(f"ranks_per_node must be 0..{MAX_RANKS_PER_NODE} (0 = one per GPU), "
                        f"got {request.ranks_per_node}")
    if request.max_parallel < 0:
        problems.append(f"max_parallel must be >= 0 (0 = all at once), got {request.max_parallel}")
    if not 0 <= request.repeats <= MAX_REPEATS:
        problems.append(f"repeats must be 0..{MAX_REPEATS} (0 = once), got {request.repeats}")
    elif len(sizes) + max(0, request.repeats - 1) > MAX_SIZES:
        problems.append(f"sizes and repeats: more than {MAX_SIZES} measurements")
    if not 0 <= request.master_port <= 65535:
        problems.append(f"master_port must be 0..65535 (0 = {defaults.port_base}), "
                        f"got {request.master_port}")
    options: dict[str, Mapping[str, str]] = {}
    for node, text in sorted(request.node_options.items()):
        if nodes and node not in nodes:
            problems.append(f"node_options names {node!r}, which is not requested")
            continue
        try:
            options[node] = MappingProxyType(parse_options(text))
        except ValueError as err:
            problems.append(f"node_options for {node!r}: {err}")
    if problems:
        raise BurninRequestError(problems)
    in_flight = defaults.max_in_flight
    return BurninParams(
        nodes=nodes, all_nodes=request.all, sizes=with_repeats(sizes, request.repeats),
        iters=request.iters or defaults.iters,
        warmup_iters=request.warmup_iters or defaults.warmup_iters,
        timeout_s=timeout or defaults.timeout_s, answer_grace_s=defaults.answer_grace_s,
        multi_node=request.multi_node or request.cross_domain,
        ranks_per_node=request.ranks_per_node,
        max_parallel=min(request.max_parallel, in_flight) if request.max_parallel else in_flight,
        port_base=request.master_port or defaults.port_base,
        rendezvous_host=defaults.rendezvous_host, cross_domain=request.cross_domain,
        node_options=MappingProxyType(options),
    )
