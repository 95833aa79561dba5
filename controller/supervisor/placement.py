"""Topology-aware rank placement, a pure function.

Ranks are numbered Megatron-style with TP=1 (order tp-cp-ep-dp-pp), so each expert-parallel
group is `ep_size` consecutive global ranks. Placement keeps every such group inside ONE NVLink
domain (its all-to-all stays on NVLink, never crossing the scale-out fabric), puts local rank i
on GPU i and NIC rail i (rail-aligned), and holds `spares_per_domain` healthy nodes back in every
domain it uses, so a failed node is replaced from its own domain without moving the group.
When the admitted nodes cannot hold the run, the result explains what each domain could offer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """An admitted node, as placement sees it."""

    name: str
    domain: str
    gpus: int
    rails: Mapping[int, str] | None = None  # GPU index -> NIC rail


@dataclass(frozen=True)
class RankSlot:
    """One rank on one node."""

    rank: int
    local_rank: int
    gpu: int
    rail: str


@dataclass(frozen=True)
class NodePlacement:
    """The ranks one node runs and the EP group it belongs to."""

    node: str
    domain: str
    ep_group: int
    ranks: tuple[RankSlot, ...]


@dataclass(frozen=True)
class Layout:
    """What placement needs of the run's parallel layout."""

    world_size: int
    ranks_per_node: int
    ep_size: int
    spares_per_domain: int = 0


@dataclass(frozen=True)
class Placement:
    """A satisfiable placement: nodes in rank order, and the spares held per domain."""

    nodes: tuple[NodePlacement, ...]
    spares: Mapping[str, tuple[str, ...]]

    @property
    def node_names(self) -> tuple[str, ...]:
        return tuple(n.node for n in self.nodes)


@dataclass(frozen=True)
class Unsatisfiable:
    """Why the run cannot be placed, in words an operator can act on."""

    reasons: tuple[str, ...]


def place(candidates: Sequence[Candidate], layout: Layout) -> Placement | Unsatisfiable:
    """Assign ranks to nodes domain by domain; deterministic for the same input."""
    problems = _layout_problems(layout)
    if problems:
        return Unsatisfiable(tuple(problems))
    nodes_per_group = layout.ep_size // layout.ranks_per_node
    groups_needed = layout.world_size // layout.ep_size
    domains = _group_by_domain(candidates, layout.ranks_per_node)
    placed: list[NodePlacement] = []
    spares: dict[str, tuple[str, ...]] = {}
    offers: list[str] = []
    for domain, members in sorted(domains.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        usable = len(members) - layout.spares_per_domain
        fit = max(0, usable // nodes_per_group)
        offers.append(f"{domain}: {len(members)} nodes → {fit} group(s)")
        take = min(fit, groups_needed - len(placed) // nodes_per_group)
        if take <= 0:
            continue
        used = members[: take * nodes_per_group]
        for node in used:
            placed.append(_node_placement(node, len(placed), layout, nodes_per_group))
        spares[domain] = tuple(n.name for n in members[len(used):])
        if len(placed) // nodes_per_group == groups_needed:
            return Placement(tuple(placed), spares)
    have = len(placed) // nodes_per_group
    return Unsatisfiable((
        f"need {groups_needed} expert-parallel groups of {nodes_per_group} nodes "
        f"({layout.ep_size} ranks, {layout.ranks_per_node} per node) each inside one NVLink "
        f"domain with {layout.spares_per_domain} spare(s) held per domain; "
        f"the admitted nodes hold only {have}",
        *offers,
    ))


def _layout_problems(layout: Layout) -> list[str]:
    problems = []
    if layout.ranks_per_node <= 0 or layout.ep_size <= 0 or layout.world_size <= 0:
        problems.append("world_size, ranks_per_node and ep_size must be positive")
        return problems
    if layout.ep_size % layout.ranks_per_node:
        problems.append(f"ep_size {layout.ep_size} is not a multiple of ranks_per_node "
                        f"{layout.ranks_per_node}: a group would split a node")
    if layout.world_size % layout.ep_size:
        problems.append(f"world_size {layout.world_size} is not a multiple of ep_size "
                        f"{layout.ep_size}")
    if layout.spares_per_domain < 0:
        problems.append("spares_per_domain must be >= 0")
    return problems


def _group_by_domain(candidates: Sequence[Candidate],
                     ranks_per_node: int) -> dict[str, list[Candidate]]:
    domains: dict[str, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: c.name):
        if c.gpus >= ranks_per_node:
            domains.setdefault(c.domain, []).append(c)
    return domains


def _node_placement(node: Candidate, index: int, layout: Layout,
                    nodes_per_group: int) -> NodePlacement:
    first = index * layout.ranks_per_node
    rails = node.rails or {}
    ranks = tuple(
        RankSlot(rank=first + i, local_rank=i, gpu=i, rail=rails.get(i, ""))
        for i in range(layout.ranks_per_node)
    )
    return NodePlacement(node.name, node.domain, index // nodes_per_group, ranks)


def replace_node(placement: Placement, failed: str, spare: str) -> Placement:
    """The same placement with `failed` swapped for `spare` (same ranks, same EP group)."""
    nodes = tuple(
        NodePlacement(spare, n.domain, n.ep_group, n.ranks) if n.node == failed else n
        for n in placement.nodes
    )
    spares = {d: tuple(s for s in names if s != spare) for d, names in placement.spares.items()}
    return Placement(nodes, spares)
