"""Per-node controller metrics, refreshed at scrape time from the service's in-memory caches.

- gpufleet_node_state_info{node,state,reason} = 1: each node's lifecycle state and the reason
  recorded with its latest transition (truncated to REASON_MAX characters, empty when none);
- gpufleet_node_heartbeat_age_seconds{node}: seconds since the controller last heard from the
  node (any message); a node not heard from since the controller started counts from the
  start. Retired nodes are left out: they are expected to be silent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import Gauge

REASON_MAX = 200
RETIRED = "retired"

#: node -> (lifecycle state, recorded reason)
StatesSource = Callable[[], Mapping[str, tuple[str, str]]]
#: node -> seconds since the controller last heard from it
AgesSource = Callable[[], Mapping[str, float]]


def _none() -> Mapping[str, tuple[str, str]]:
    return {}


def _no_ages() -> Mapping[str, float]:
    return {}


class NodeSync:
    """Writes the service's node caches into the two node families (a ScrapeTime refresh)."""

    def __init__(self, state_info: Gauge, heartbeat_age: Gauge) -> None:
        self.state_info = state_info
        self.heartbeat_age = heartbeat_age
        self.states: StatesSource = _none
        self.ages: AgesSource = _no_ages

    def __call__(self) -> None:
        states = self.states()
        ages = self.ages()
        self.state_info.clear()
        self.heartbeat_age.clear()
        for node, (state, reason) in sorted(states.items()):
            self.state_info.labels(node, state, reason[:REASON_MAX]).set(1)
        for node, age in sorted(ages.items()):
            if states.get(node, ("", ""))[0] != RETIRED:
                self.heartbeat_age.labels(node).set(max(0.0, age))
