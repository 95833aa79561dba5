"""Typed rows the FleetStore reads and writes (plain frozen dataclasses, no SQL here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from protos.gpufleet.v1 import fleet_pb2


class Inbound(NamedTuple):
    """One validated, durable (seq > 0) message from a node's stream, waiting to be stored."""

    node: str
    msg: fleet_pb2.AgentMessage
    received_at: float  # wall seconds when the controller read it
    received_mono: float  # monotonic seconds, for the receive -> commit latency
    stream: int = 0  # which stream carried it (the server drops a failed stream's leftovers)


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """What a Hello says about a node (identity, firmware, topology)."""

    name: str
    hostname: str = ""
    agent_version: str = ""
    sku: str = ""
    driver_version: str = ""
    cuda_driver_version: str = ""
    nvlink_domain: str = ""
    rack: str = ""
    boot_id: str = ""
    gpus: tuple[dict[str, Any], ...] = ()
    rails: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeRow:
    """A node as stored: identity plus lifecycle state and the latest health."""

    name: str
    hostname: str
    agent_version: str
    sku: str
    driver_version: str
    cuda_driver_version: str
    nvlink_domain: str
    rack: str
    boot_id: str
    gpus: tuple[dict[str, Any], ...]
    rails: tuple[dict[str, Any], ...]
    state: str
    state_reason: str
    state_since: float
    registered_at: float
    last_seen: float
    last_seq: int
    verdict: str  # ok | warn | critical | unknown (latest report's)
    health_evidence_id: int | None
    health_at: float | None  # sampled_at of the latest report


@dataclass(frozen=True, slots=True)
class Registration:
    """The answer to a Hello: what the node already has stored, and its state."""

    node: str
    last_seq: int
    state: str
    created: bool


@dataclass(frozen=True, slots=True)
class StoredItem:
    """A message that this batch actually inserted (replays are not listed)."""

    node: str
    seq: int
    kind: str  # report | xid | rank_exit | progress | result
    at: float  # when it happened (sampled_at / event time / received)
    verdict: str  # ok | warn | critical | unknown ("" when the kind has none)
    action: str  # none | restart_app | ... ("" when the kind has none)
    evidence_id: int | None
    directive_id: str
    cause: str  # a short human description, e.g. "xid 79 on gpu 3"


@dataclass(slots=True)
class StoredBatch:
    """What one committed batch did."""

    max_seq: dict[str, int] = field(default_factory=dict)  # per node, after the batch
    stored: list[StoredItem] = field(default_factory=list)
    duplicates: int = 0


@dataclass(frozen=True, slots=True)
class EvidenceRow:
    """One piece of evidence the gate and transitions cite."""

    id: int
    node: str
    kind: str  # health | xid | burnin | operator
    verdict: str
    detail: dict[str, Any]
    taken_at: float
    source: str


@dataclass(frozen=True, slots=True)
class TransitionRow:
    """One lifecycle move, with its cause and evidence."""

    id: int
    node: str
    from_state: str
    to_state: str
    cause: str
    evidence_id: int | None
    actor: str
    at: float


@dataclass(frozen=True, slots=True)
class EventRow:
    """One fleet event (xid, rank exit, transition, drain, ...)."""

    id: int
    node: str
    kind: str
    message: str
    at: float
    detail: dict[str, str]


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One operator action."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
