"""NodeCache: the controller's in-memory picture of the fleet.

Each node's lifecycle state and the reason recorded with it, when it was last heard from,
which nodes are unreachable, and which the heartbeat check has declared lost. The database
stays the truth: FleetService loads this picture at start and updates it after every
committed transition. No database and no event loop here; the scrape-time readers
(`state_reasons`, `heartbeat_ages`) copy before they iterate, since they run off the loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.fleet.fleet_checks import stale_nodes
from controller.fleet.lifecycle import NodeState
from controller.store import TransitionRow
from gpufleet_common.clock import Clock


class NodeCache:
    """Cached node states, reasons and last-heard times (FleetService owns one)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._states: dict[str, NodeState] = {}
        self._reasons: dict[str, str] = {}
        self._last_seen: dict[str, float] = {}
        self._lost: set[str] = set()  # declared lost by the heartbeat check, not heard since
        self._unreachable_nodes: set[str] = set()  # whose stored state is unreachable

    # ------------------------------------------------------------------ updates

    def load(self, states: Mapping[str, tuple[str, str]]) -> None:
        """Replace the picture with the stored (state, reason) of every node.

        Every node counts as heard from now, so a controller restart gives each a full
        heartbeat timeout to reconnect; unreachable nodes stay lost until they are heard.
        """
        now = self._clock.time()
        self._states = {name: NodeState(state) for name, (state, _) in states.items()}
        self._reasons = {name: reason for name, (_, reason) in states.items()}
        self._last_seen = dict.fromkeys(self._states, now)
        self._unreachable_nodes = {
            n for n, s in self._states.items() if s is NodeState.UNREACHABLE}
        self._lost = set(self._unreachable_nodes)

    def note_seen(self, node: str) -> None:
        """Record that `node` just sent something (for the heartbeat check)."""
        self._last_seen[node] = self._clock.time()
        self._lost.discard(node)

    def note_registered(self, node: str, state: str) -> None:
        """Cache a registered node's stored state, unless its state is already cached."""
        self._states.setdefault(node, NodeState(state))

    def apply(self, row: TransitionRow) -> None:
        """Follow a committed lifecycle transition."""
        self._states[row.node] = NodeState(row.to_state)
        self._reasons[row.node] = row.cause
        if row.to_state == NodeState.UNREACHABLE:
            self._unreachable_nodes.add(row.node)
        else:
            self._unreachable_nodes.discard(row.node)

    # ------------------------------------------------------------------ heartbeat

    def stale(self, timeout_s: float) -> list[str]:
        """Nodes not yet declared lost and silent for more than `timeout_s`, sorted."""
        watched = {n: t for n, t in self._last_seen.items() if n not in self._lost}
        return stale_nodes(watched, self._clock.time(), timeout_s)

    def mark_lost(self, nodes: Iterable[str]) -> None:
        """Stop watching `nodes` until they are heard from again."""
        self._lost.update(nodes)

    # ------------------------------------------------------------------ reads

    def unreachable(self) -> frozenset[str]:
        """Nodes whose cached state is unreachable."""
        return frozenset(self._unreachable_nodes)

    def state_of(self, node: str) -> NodeState | None:
        """The cached lifecycle state of `node`."""
        return self._states.get(node)

    def state_reasons(self) -> Mapping[str, tuple[str, str]]:
        """Every node's cached (state, reason recorded with it), for scrape-time metrics."""
        states, reasons = dict(self._states), dict(self._reasons)  # copies: called off-loop
        return {n: (s.value, reasons.get(n, "")) for n, s in states.items()}

    def heartbeat_ages(self) -> Mapping[str, float]:
        """Seconds since each node was last heard from (restarts count from start-up)."""
        now = self._clock.time()
        return {n: max(0.0, now - seen) for n, seen in dict(self._last_seen).items()}

    def state_counts(self) -> Mapping[str, int]:
        """Nodes per lifecycle state (every state listed)."""
        counts = dict.fromkeys((s.value for s in NodeState), 0)
        for state in self._states.values():
            counts[state.value] += 1
        return counts


__all__ = ["NodeCache"]
