"""Where simulated nodes sit: `SimNode` (identity, NVLink domain, rack/tray, own faults), node
naming, and the seeded digests identities and noise derive from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from agent.gpu.sim_faults import SimFault
from agent.gpu.sim_profiles import PROFILES, SkuProfile


@dataclass(frozen=True, slots=True)
class SimNode:
    """One simulated node: identity, place in the fleet, and its own scripted faults."""

    name: str
    sku: str = "h100_sxm"
    gpus: int | None = None  # None: the SKU's count
    seed: int = 0
    index: int = 0  # position in the fleet
    domain_index: int = 0
    tray: int | None = None  # tray in its NVL72 rack (gb300)
    rack: str = "rack-000"
    cluster_uuid: str | None = None  # fabric clusterUuid (gb300)
    clique_id: int | None = None
    faults: tuple[SimFault, ...] = ()
    inbox: str | None = None
    load: float = 0.0
    aliases: frozenset[str] = field(default_factory=frozenset)  # other names faults may use

    @property
    def profile(self) -> SkuProfile:
        """The node's SKU profile."""
        return PROFILES[self.sku]

    @property
    def gpu_count(self) -> int:
        """GPUs on this node."""
        return self.gpus if self.gpus is not None else self.profile.gpus

    @property
    def nvlink_domain(self) -> str:
        """NVLink domain identity: `clusterUuid/cliqueId` on a fabric, else the node itself."""
        if self.cluster_uuid is not None:
            return f"{self.cluster_uuid}/{self.clique_id}"
        return self.name


def node_name(profile: SkuProfile, index: int, domain_size: int, nodes: int) -> str:
    """Name of the index-th node: `gb300-d{domain}-t{tray:02d}` on a fabric, else `h100-n007`."""
    if profile.has_fabric:
        return f"{profile.name_prefix}-d{index // domain_size}-t{index % domain_size:02d}"
    width = max(3, len(str(nodes - 1)))
    return f"{profile.name_prefix}-n{index:0{width}d}"


def stable_digest(*parts: object) -> bytes:
    """16 deterministic bytes from the parts (seeded identities and noise)."""
    return hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=16).digest()
