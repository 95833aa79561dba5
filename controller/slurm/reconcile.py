"""Which drains and resumes make Slurm's node states match gpufleet's. Pure.

gpufleet owns exactly the drains whose reason starts with its tag (`gpufleet:` by default);
every other drain belongs to someone else (an operator, Slurm itself, the node's own health
check) and is never resumed or reworded. The rules, per node known to both:

- gpufleet says the node is unfit (suspect, drained, repair, retired): drain it with the
  reason `gpufleet: <finding> (evidence <id>)`, unless Slurm already keeps it out of service
  for someone else's reason. A gpufleet drain whose reason changed is re-issued.
- gpufleet says the node is fit (ready, allocated): resume it if gpufleet drained it.
- Otherwise (registered, preflight, unreachable) nothing changes: a node gpufleet drained
  stays drained until it passes preflight again, and a node gpufleet never drained is not
  drained merely for being new or for its agent being out of touch (Slurm's own liveness
  covers slurmd).

When Slurm already matches, there is nothing to do: a second pass after applying the actions
returns [].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

from controller.fleet.lifecycle import NodeState
from controller.slurm.model import SlurmNode

DEFAULT_OWNER_TAG = "gpufleet:"
MAX_REASON_CHARS = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,:;@#/()+\-]")


class SlurmIntent(StrEnum):
    """What a gpufleet state asks of the node's Slurm state."""

    DRAIN = "drain"
    RESUME = "resume"
    HOLD = "hold"  # change nothing: keep our drain if there is one, add none


INTENT: Mapping[NodeState, SlurmIntent] = MappingProxyType({
    NodeState.REGISTERED: SlurmIntent.HOLD,
    NodeState.PREFLIGHT: SlurmIntent.HOLD,
    NodeState.READY: SlurmIntent.RESUME,
    NodeState.ALLOCATED: SlurmIntent.RESUME,
    NodeState.SUSPECT: SlurmIntent.DRAIN,
    NodeState.DRAINED: SlurmIntent.DRAIN,
    NodeState.REPAIR: SlurmIntent.DRAIN,
    NodeState.UNREACHABLE: SlurmIntent.HOLD,
    NodeState.RETIRED: SlurmIntent.DRAIN,
})


class FleetNodeView(NamedTuple):
    """A node as gpufleet judges it: its lifecycle state, why, and the evidence behind it."""

    state: NodeState
    reason: str = ""
    evidence_id: str | int | None = None


@dataclass(frozen=True, slots=True)
class Drain:
    """`scontrol update NodeName=<node> State=DRAIN Reason=<reason>`."""

    node: str
    reason: str
    previous_reason: str = ""


@dataclass(frozen=True, slots=True)
class Resume:
    """`scontrol update NodeName=<node> State=RESUME` (gpufleet's own drain only)."""

    node: str
    previous_reason: str = ""


Action = Drain | Resume


def sanitize_reason(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """One line of safe characters (no quotes, `|`, `=` or control characters), at most
    `limit` long; cut text ends in `...`."""
    if limit < 4:
        raise ValueError(f"a reason limit must be at least 4 characters, not {limit}")
    clean = " ".join(_UNSAFE.sub(" ", text).split())
    return clean if len(clean) <= limit else clean[: limit - 3].rstrip() + "..."


def check_owner_tag(owner_tag: str) -> str:
    """The tag when it is usable as a reason prefix; ValueError otherwise."""
    if not owner_tag or owner_tag != sanitize_reason(owner_tag) or len(owner_tag) > 40:
        raise ValueError(f"owner tag must be 1-40 safe characters without surrounding "
                         f"spaces, not {owner_tag!r}")
    return owner_tag


def drain_reason(view: FleetNodeView, owner_tag: str = DEFAULT_OWNER_TAG,
                 limit: int = MAX_REASON_CHARS) -> str:
    """`<tag> <finding> (evidence <id>)`, sanitised and bounded; the tag and the evidence id
    survive any cut."""
    check_owner_tag(owner_tag)
    finding = sanitize_reason(view.reason or NodeState(view.state).value, limit)
    suffix = ""
    if view.evidence_id not in (None, ""):
        suffix = " " + sanitize_reason(f"(evidence {view.evidence_id})", 40)
    room = limit - len(owner_tag) - 1 - len(suffix)
    return f"{owner_tag} {sanitize_reason(finding, max(room, 4))}{suffix}"


def is_ours(node: SlurmNode, owner_tag: str = DEFAULT_OWNER_TAG) -> bool:
    """gpufleet drained this node (its reason carries our tag)."""
    return node.drained and node.reason.startswith(owner_tag)


def _action(name: str, view: FleetNodeView, node: SlurmNode, owner_tag: str) -> Action | None:
    intent = INTENT[NodeState(view.state)]  # ValueError for a state gpufleet does not have
    ours = is_ours(node, owner_tag)
    if intent is SlurmIntent.RESUME:
        return Resume(name, node.reason) if ours else None
    if intent is SlurmIntent.DRAIN:
        wanted = drain_reason(view, owner_tag)
        if ours:
            return None if node.reason == wanted else Drain(name, wanted, node.reason)
        if node.out_of_service and node.reason:
            return None  # someone else keeps it out: their reason stands
        return Drain(name, wanted, node.reason)
    return None


def reconcile(gpufleet_states: Mapping[str, FleetNodeView],
              slurm_nodes: Mapping[str, SlurmNode],
              owner_tag: str = DEFAULT_OWNER_TAG) -> list[Action]:
    """The actions, in node-name order, that make Slurm agree with gpufleet. Nodes only one
    side knows are left alone."""
    check_owner_tag(owner_tag)
    actions: list[Action] = []
    for name in sorted(gpufleet_states.keys() & slurm_nodes.keys()):
        action = _action(name, gpufleet_states[name], slurm_nodes[name], owner_tag)
        if action is not None:
            actions.append(action)
    return actions


def held_by_others(gpufleet_states: Mapping[str, FleetNodeView],
                   slurm_nodes: Mapping[str, SlurmNode],
                   owner_tag: str = DEFAULT_OWNER_TAG) -> list[str]:
    """Nodes gpufleet finds fit but someone else keeps out of service (for reports: gpufleet
    will not resume them)."""
    return sorted(
        name for name in gpufleet_states.keys() & slurm_nodes.keys()
        if INTENT[gpufleet_states[name].state] is SlurmIntent.RESUME
        and slurm_nodes[name].drained and not is_ours(slurm_nodes[name], owner_tag)
    )
