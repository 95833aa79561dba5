"""Small immutable types the pure fleet logic consumes and produces.

Spellings match the JSON contract: severities are "ok|warn|unknown|critical", actions are
NVIDIA's resolution buckets, evidence kinds are "health" and "burnin".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from controller.fleet.lifecycle import NodeState
from gpufleet_common.severity import Severity as Severity  # the gate's vocabulary


class EvidenceKind(StrEnum):
    """What a piece of evidence is: a health sweep or a collective burn-in."""

    HEALTH = "health"
    BURNIN = "burnin"


@dataclass(frozen=True)
class GateFinding:
    """One finding inside a piece of evidence (a check's judgement, maybe about one GPU)."""

    check: str
    severity: Severity
    gpu: int | None = None
    message: str = ""
    action: str = "none"


@dataclass(frozen=True)
class Evidence:
    """A judged, timestamped test result for one node."""

    id: str
    kind: str
    verdict: Severity
    findings: tuple[GateFinding, ...] = ()
    taken_at: float = 0.0


@dataclass(frozen=True)
class NodeFacts:
    """What the gate needs to know about a node besides its evidence.

    `trusted_since`: evidence taken before this time is not trusted (set it when the node
    re-registers after an outage or comes back from repair), so it is re-tested.
    `allocated_run`: the run an allocated node belongs to.
    """

    name: str
    state: NodeState
    state_reason: str = ""
    allocated_run: str = ""
    trusted_since: float = 0.0


def _default_ttls() -> Mapping[str, float]:
    return MappingProxyType({EvidenceKind.HEALTH: 300.0, EvidenceKind.BURNIN: 6 * 3600.0})


_DEFAULT_REJECT = frozenset({Severity.CRITICAL, Severity.UNKNOWN})


@dataclass(frozen=True)
class GatePolicy:
    """How the gate judges evidence.

    - `ttl_s`: how long each kind of evidence stays fresh (health: minutes, burn-in: hours).
      Evidence of a kind without a TTL is ignored.
    - `required`: kinds a node must have fresh evidence of; missing or stale ones are re-tested.
    - `reject_severities`: finding severities that reject (default critical and unknown: a
      check that could not tell is not a pass).
    - `blocking_checks`: checks whose findings can reject; None means every check. Findings
      of other checks are reported as notes only.
    """

    ttl_s: Mapping[str, float] = field(default_factory=_default_ttls)
    required: frozenset[str] = frozenset({EvidenceKind.HEALTH})
    reject_severities: frozenset[Severity] = _DEFAULT_REJECT
    blocking_checks: frozenset[str] | None = None

    def __post_init__(self) -> None:
        problems = [f"ttl for {k!r} must be > 0 (got {v})" for k, v in self.ttl_s.items() if v <= 0]
        problems += [
            f"required kind {k!r} has no ttl" for k in sorted(self.required - set(self.ttl_s))
        ]
        if Severity.OK in self.reject_severities:
            problems.append("reject_severities must not contain ok")
        if problems:
            raise ValueError("invalid gate policy: " + "; ".join(problems))

    def with_burnin(self) -> GatePolicy:
        """This policy, also requiring fresh burn-in evidence."""
        return GatePolicy(
            ttl_s=self.ttl_s,
            required=self.required | {EvidenceKind.BURNIN},
            reject_severities=self.reject_severities,
            blocking_checks=self.blocking_checks,
        )

    def blocks(self, finding: GateFinding) -> bool:
        """Whether `finding` rejects a node under this policy."""
        if finding.severity not in self.reject_severities:
            return False
        return self.blocking_checks is None or finding.check in self.blocking_checks


@dataclass(frozen=True)
class GateReason:
    """Why a node was rejected (or a note about it), with the evidence behind it."""

    check: str
    severity: Severity
    gpu: int | None
    message: str
    evidence_age_s: float | None = None
    evidence_id: str = ""


@dataclass(frozen=True)
class GateVerdict:
    """The gate's answer for one node.

    `retest`: kinds of evidence to re-test (stale, missing or untrusted) before judging again;
    only these are re-tested. `notes`: findings that did not block (warnings, waived checks).
    """

    node: str
    admitted: bool
    reasons: tuple[GateReason, ...] = ()
    retest: frozenset[str] = frozenset()
    notes: tuple[GateReason, ...] = ()


@dataclass(frozen=True)
class NodeInventory:
    """What a node says it is, for fleet-wide comparison.

    `components`: version strings by component ("driver", "cuda_driver", "vbios", "inforom");
    an empty value means not reported and is left out of comparisons.
    """

    name: str
    sku: str
    gpu_count: int
    components: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FleetFinding:
    """A finding only the fleet view can make. `node` is None for a fleet-level finding."""

    node: str | None
    check: str
    severity: Severity
    message: str
    sku: str = ""
    component: str = ""
    value: str = ""
    expected: str = ""
    action: str = "none"
