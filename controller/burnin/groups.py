"""Pure burn-in planning: which ranks run where, in which groups, rendezvousing how.

Three passes, all planned here and run by the orchestrator:

1. **Single-node.** Every runnable node alone, all at once: a node's all-reduce over its own
   GPUs (NVLink within the node). Nodes share nothing, so the fleet's wall time is one node's.
   The agent picks its own rendezvous port (`master_port` 0, `master_addr` loopback).
2. **Multi-node** (optional). Nodes grouped the way a training run uses the fabric: every node of
   one NVLink domain (an NVL72 rack: 18 trays) together, in one all-reduce. Only nodes that
   passed the single-node pass join, so a group failure points at the fabric between them and
   not at a node already known to be bad. Groups of different domains share nothing and run at
   the same time.
3. **Cross-domain pairs** (optional, after 2). The scale-out fabric between NVLink domains (the
   InfiniBand / RoCE rails between racks): domains sorted by id, consecutive domains paired
   (d0 with d1, d2 with d3, ...), and node j of one (by sorted name) with node j of the other,
   each pair its own two-node all-reduce. Every rank is rail-aligned: local rank i uses its
   node's NIC rail i (`Member.rails`, sent to the agent, which sets `NCCL_IB_HCA` per rank).
   Only nodes that passed the earlier passes are paired (the orchestrator filters). With an odd
   number of domains the last one has no partner and is reported, not paired with d0 again: a
   node in two pairs would run two burn-ins on the same GPUs at once, and a second round would
   double the pass's wall time for one domain. Likewise the nodes of the larger domain of a pair
   beyond the smaller one's count are reported. Rerun with another node set to cover them.

   In practice: NCCL's rail-optimized rings and trees keep inter-node traffic on one rail —
   local rank i of every node talks to local rank i of the others over rail i, through that
   rail's leaf switches — so a pair test with all local ranks loads every rail of both nodes at
   once, and pairing domain d0 with d1 crosses the spine between their racks. A ring runs at its
   slowest link, so one rail that is down, flapping or slow (a bad cable, optic or switch port)
   shows as a low busbw for the whole pair, and only for that pair. Which of the two nodes it
   is: cross-check each node against another partner (e.g. `gpufleet burnin --cross-domain` over
   a different node set, so the node is paired anew) — the node with the bad rail stays low with
   any partner, the healthy one recovers; then `ibstat` / `perfquery` its rails. Each pair is
   judged only against the other pairs (cohort = group shape: SKU, driver, NCCL, world size),
   never against the NVLink-domain groups.

What this does **not** plan: ring or tree sweeps over the whole fleet, and single-rail tests
(one local rank per rail, others idle). A domain left with one node has no multi-node group (its
single-node result stands), so nodes whose domain is just themselves (an H100 node is its own
NVLink domain) are never in a domain group, but they are paired across domains in pass 3.
Nodes with no domain are never grouped.

Rendezvous of a multi-node group or pair: at the controller's configured rendezvous host when it
has one; else, when every member reports the same hostname, the group lives on one machine and
meets on loopback; otherwise at the first member's (the master's) hostname.
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
    #: NIC rail "<device>/<port>" per GPU index ("" where none is known)
    rails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Skipped:
    """A requested node that will not be burned in, and why."""

    node: str
    reason: str


@dataclass(frozen=True)
class Member:
    """One node's share of a group: `local_ranks` ranks starting at global `rank_offset`;
    `rails` the NIC rail of each local rank ("<device>/<port>", "" = none; empty: not pinned)."""

    node: str
    rank_offset: int
    local_ranks: int
    rails: tuple[str, ...] = ()


@dataclass(frozen=True)
class Group:
    """One all-reduce: a single node (label = its name), an NVLink domain ("domain:<id>") or a
    pair across two domains ("pair:<a>+<b>", `domain` "<da>+<db>")."""

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
    by_domain, skipped = _by_domain(survivors, port_base)
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


def _by_domain(survivors: Iterable[Candidate],
               port_base: int) -> tuple[dict[str, list[Candidate]], list[Skipped]]:
    """Survivors (deduplicated, sorted by name) per NVLink domain, and those without one."""
    if not 0 < port_base <= 65535:
        raise ValueError(f"port base must be 1..65535, got {port_base}")
    by_domain: dict[str, list[Candidate]] = {}
    skipped: list[Skipped] = []
    for c in sorted({c.name: c for c in survivors}.values(), key=lambda c: c.name):
        if not c.nvlink_domain:
            skipped.append(Skipped(c.name, "reports no NVLink domain"))
        else:
            by_domain.setdefault(c.nvlink_domain, []).append(c)
    return by_domain, skipped


def rank_rails(candidate: Candidate, local_ranks: int) -> tuple[str, ...]:
    """The rail of each local rank (local rank i on GPU i, so on GPU i's rail); empty when the
    node reported no rail for any of them."""
    rails = tuple(candidate.rails[i] if i < len(candidate.rails) else ""
                  for i in range(local_ranks))
    return rails if any(rails) else ()


def _domain_pairs(domains: Sequence[str]) -> tuple[list[tuple[str, str]], str | None]:
    """Consecutive sorted domains paired (d0+d1, d2+d3, ...), and the odd one out, if any."""
    pairs = [(domains[k], domains[k + 1]) for k in range(0, len(domains) - 1, 2)]
    return pairs, (domains[-1] if len(domains) % 2 else None)


def cross_domain_plan(
    survivors: Iterable[Candidate], ranks_per_node: int, port_base: int = DEFAULT_PORT_BASE,
    rendezvous_host: str | None = None,
) -> Plan:
    """Two-node groups across NVLink domains, rail-aligned (see the module docstring).

    `survivors` are the nodes that passed the earlier passes. `skipped` lists those left out of
    every pair, and why (no domain, no partner domain, no partner node, no hostname, no port).
    """
    by_domain, skipped = _by_domain(survivors, port_base)
    pairs, odd = _domain_pairs(sorted(by_domain))
    groups: list[Group] = []
    for da, db in pairs:
        side_a, side_b = by_domain[da], by_domain[db]
        for j in range(max(len(side_a), len(side_b))):
            if j >= len(side_b) or j >= len(side_a):
                lone, mine, other = ((side_a[j], da, db) if j < len(side_a)
                                     else (side_b[j], db, da))
                skipped.append(Skipped(lone.name, f"no partner: {other} has fewer nodes than "
                                                  f"{mine} in this pass"))
                continue
            a, b = side_a[j], side_b[j]
            why = f"pair {a.name}+{b.name}"
            try:
                addr = rendezvous_addr((a, b), rendezvous_host)
            except ValueError as err:
                skipped.extend(Skipped(c.name, f"{why}: {err}") for c in (a, b))
                continue
            port = port_base + len(groups)
            if port > 65535:
                skipped.extend(Skipped(c.name, f"{why}: no port left above {port_base}")
                               for c in (a, b))
                continue
            local_a, local_b = ranks_for(a, ranks_per_node), ranks_for(b, ranks_per_node)
            members = (Member(a.name, 0, local_a, rank_rails(a, local_a)),
                       Member(b.name, local_a, local_b, rank_rails(b, local_b)))
            groups.append(Group(f"pair:{a.name}+{b.name}", members, addr, port, f"{da}+{db}"))
    if odd is not None:
        skipped.extend(Skipped(c.name, f"NVLink domain {odd} has no partner domain in this "
                                       "pass (an odd number of domains)")
                       for c in by_domain[odd])
    return Plan(tuple(groups), tuple(skipped))
