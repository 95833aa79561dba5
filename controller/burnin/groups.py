"""Pure burn-in planning: which ranks run where, in which groups, rendezvousing how.

Two passes, both planned here and run by the orchestrator:

1. **Single-node.** Every runnable node alone, all at once: a node's all-reduce over its own
   GPUs (NVLink within the node). Nodes share nothing, so the fleet's wall time is one node's.
   The agent picks its own rendezvous port (`master_port` 0, `master_addr` loopback).
2. **Multi-node** (optional). Nodes grouped the way a training run uses the fabric: every node of
   one NVLink domain (an NVL72 rack: 18 trays) together, in one all-reduce. Only nodes that
   passed the single-node pass join, so a group failure points at the fabric between them and
   not at a node already known to be bad. Groups of different domains share nothing and run at
   the same time.

What this does **not** plan: pairs across NVLink domains per rail (the scale-out InfiniBand /
RoCE fabric between racks) and ring or tree sweeps over the whole fleet. A domain left with one
node has no multi-node group (its single-node result stands), so nodes whose domain is just
themselves (an H100 node is its own NVLink domain) and nodes with no domain are never grouped.

Rendezvous of a multi-node group: at the controller's configured rendezvous host when it has one;
else, when every member reports the same hostname, the group lives on one machine and meets on
loopback; otherwise at the first member's (the master's) hostname.
Ports count up from a base, one per group, so concurrent groups never share one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from controller.fleet.lifecycle import NodeState

#: States a node may be burned in from. Not `allocated` (a run owns its GPUs), `unreachable`
#: (cannot be told) or `retired`. `suspect`, `drained` and `repair` may: a burn-in is how an
#: operator finds out whether such a node is fit again; the gate still judges its state.
BURNIN_STATES: frozenset[NodeState] = frozenset({
    NodeState.REGISTERED, NodeState.PREFLIGHT, NodeState.READY, NodeState.SUSPECT,
    NodeState.DRAINED, NodeState.REPAIR,
})
LOOPBACK = "127.0.0.1"
DEFAULT_PORT_BASE = 29500
MAX_RANKS_PER_NODE = 1024  # the agent refuses more local ranks than this


@dataclass(frozen=True)
class Candidate:
    """A requested node as the planner needs it (`registered` False: unknown name)."""

    name: str
    registered: bool = True
    sku: str = ""
    nvlink_domain: str = ""
    gpus: int = 0
    driver: str = ""
    hostname: str = ""
    state: str = NodeState.REGISTERED.value
    connected: bool = True


@dataclass(frozen=True)
class Skipped:
    """A requested node that will not be burned in, and why."""

    node: str
    reason: str


@dataclass(frozen=True)
class Member:
    """One node's share of a group: `local_ranks` ranks starting at global `rank_offset`."""

    node: str
    rank_offset: int
    local_ranks: int


@dataclass(frozen=True)
class Group:
    """One all-reduce: a single node (label = its name) or an NVLink domain ("domain:<id>")."""

    label: str
    members: tuple[Member, ...]
    master_addr: str
    master_port: int  # 0: the (single) agent picks a free port itself
    domain: str = ""

    @property
    def world_size(self) -> int:
        """Ranks across every member."""
        return sum(m.local_ranks for m in self.members)

    @property
    def master(self) -> str:
        """The node hosting rank 0."""
        return self.members[0].node

    @property
    def nodes(self) -> tuple[str, ...]:
        """Member node names, in rank order."""
        return tuple(m.node for m in self.members)

    @property
    def multi_node(self) -> bool:
        """Whether the group spans more than one node."""
        return len(self.members) > 1


@dataclass(frozen=True)
class Plan:
    """Groups to run, and requested nodes that will not run (each with its reason)."""

    groups: tuple[Group, ...]
    skipped: tuple[Skipped, ...] = ()


def ranks_for(candidate: Candidate, ranks_per_node: int) -> int:
    """Local ranks of a node: `ranks_per_node`, or one per GPU when 0 (at least one)."""
    if ranks_per_node < 0 or ranks_per_node > MAX_RANKS_PER_NODE:
        raise ValueError(f"ranks_per_node must be 0..{MAX_RANKS_PER_NODE}, got {ranks_per_node}")
    return ranks_per_node or max(1, candidate.gpus)


def why_not(candidate: Candidate) -> str | None:
    """Why a requested node cannot be burned in now, or None when it can."""
    if not candidate.registered:
        return "node is not registered"
    if candidate.state not in BURNIN_STATES:
        return f"node is {candidate.state}; burn-in needs one of " + ", ".join(
            sorted(s.value for s in BURNIN_STATES))
    if not candidate.connected:
        return "node is not connected, so it cannot be told to burn in"
    return None


def single_node_plan(candidates: Iterable[Candidate], ranks_per_node: int) -> Plan:
    """Every runnable node alone (all run at once); the others reported, in request order."""
    groups: list[Group] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for c in candidates:
        if c.name in seen:
            continue
        seen.add(c.name)
        reason = why_not(c)
        if reason is not None:
            skipped.append(Skipped(c.name, reason))
            continue
        member = Member(c.name, 0, ranks_for(c, ranks_per_node))
        groups.append(Group(c.name, (member,), LOOPBACK, 0))
    return Plan(tuple(groups), tuple(skipped))


def rendezvous_addr(members: Sequence[Candidate], override: str | None = None) -> str:
    """`override` (the controller's configured rendezvous host) when set; else loopback when
    every member is on one host, else the master's hostname."""
    if override:
        return override
    hosts = {m.hostname for m in members}
    if len(hosts) == 1:
        return LOOPBACK
    master = members[0].hostname
    if not master:
        raise ValueError(f"{members[0].name} reported no hostname to rendezvous at")
    return master


def domain_plan(
    survivors: Iterable[Candidate], ranks_per_node: int, port_base: int = DEFAULT_PORT_BASE,
    rendezvous_host: str | None = None,
) -> Plan:
    """One group per NVLink domain with at least two `survivors`, members sorted by name.

    `skipped` lists the survivors left out of every group, and why (no domain, alone in it,
    no hostname to rendezvous at).
    """
    if not 0 < port_base <= 65535:
        raise ValueError(f"port base must be 1..65535, got {port_base}")
    by_domain: dict[str, list[Candidate]] = {}
    skipped: list[Skipped] = []
    for c in sorted({c.name: c for c in survivors}.values(), key=lambda c: c.name):
        if not c.nvlink_domain:
            skipped.append(Skipped(c.name, "reports no NVLink domain"))
        else:
            by_domain.setdefault(c.nvlink_domain, []).append(c)
    groups: list[Group] = []
    for domain in sorted(by_domain):
        nodes = by_domain[domain]
        if len(nodes) < 2:
            skipped.append(Skipped(nodes[0].name, f"alone in NVLink domain {domain} in this pass"))
            continue
        try:
            addr = rendezvous_addr(nodes, rendezvous_host)
        except ValueError as err:
            skipped.extend(Skipped(c.name, f"domain {domain}: {err}") for c in nodes)
            continue
        port = port_base + len(groups)
        if port > 65535:
            skipped.extend(Skipped(c.name, f"domain {domain}: no port left above {port_base}")
                           for c in nodes)
            continue
        members: list[Member] = []
        offset = 0
        for c in nodes:
            local = ranks_for(c, ranks_per_node)
            members.append(Member(c.name, offset, local))
            offset += local
        groups.append(Group(f"domain:{domain}", tuple(members), addr, port, domain))
    return Plan(tuple(groups), tuple(skipped))
