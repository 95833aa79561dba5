"""NodeCache: the in-memory node picture, driven by a FakeClock (no database, no loop)."""

from __future__ import annotations

import pytest

from controller.fleet.lifecycle import NodeState
from controller.server.node_cache import NodeCache
from controller.store import TransitionRow
from gpufleet_common.clock import FakeClock

TIMEOUT_S = 30.0


def row(node: str, from_state: NodeState, to_state: NodeState, cause: str) -> TransitionRow:
    """A committed transition as the store returns it."""
    return TransitionRow(id=1, node=node, from_state=from_state.value,
                         to_state=to_state.value, cause=cause, evidence_id=None,
                         actor="controller", at=0.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> NodeCache:
    """A cache loaded with one ready and one unreachable node."""
    nodes = NodeCache(clock)
    nodes.load({"node-a": ("ready", "passed preflight"),
                "node-b": ("unreachable", "silent for 30 s")})
    return nodes


def test_empty_cache_knows_nothing(clock: FakeClock) -> None:
    nodes = NodeCache(clock)
    assert nodes.state_of("node-a") is None
    assert nodes.state_reasons() == {}
    assert nodes.heartbeat_ages() == {}
    assert nodes.unreachable() == frozenset()
    assert nodes.stale(TIMEOUT_S) == []
    assert set(nodes.state_counts()) == {s.value for s in NodeState}
    assert not any(nodes.state_counts().values())


def test_load_takes_states_and_reasons_and_counts_every_node_as_just_heard(
    cache: NodeCache,
) -> None:
    assert cache.state_of("node-a") is NodeState.READY
    assert cache.state_of("node-b") is NodeState.UNREACHABLE
    assert cache.state_reasons() == {"node-a": ("ready", "passed preflight"),
                                     "node-b": ("unreachable", "silent for 30 s")}
    assert cache.heartbeat_ages() == {"node-a": 0.0, "node-b": 0.0}
    assert cache.unreachable() == frozenset({"node-b"})
    counts = cache.state_counts()
    assert counts["ready"] == 1 and counts["unreachable"] == 1 and counts["allocated"] == 0


def test_load_replaces_the_previous_picture(cache: NodeCache) -> None:
    cache.load({"node-c": ("drained", "operator")})
    assert cache.state_of("node-a") is None
    assert cache.state_reasons() == {"node-c": ("drained", "operator")}
    assert cache.unreachable() == frozenset()


def test_stale_waits_for_the_timeout_and_skips_nodes_already_lost(
    cache: NodeCache, clock: FakeClock,
) -> None:
    clock.advance(TIMEOUT_S)
    assert cache.stale(TIMEOUT_S) == []  # not silent for *more* than the timeout yet
    clock.advance(1.0)
    assert cache.stale(TIMEOUT_S) == ["node-a"]  # node-b was loaded unreachable: lost
    assert cache.heartbeat_ages() == {"node-a": TIMEOUT_S + 1.0, "node-b": TIMEOUT_S + 1.0}
    cache.mark_lost(["node-a"])
    assert cache.stale(TIMEOUT_S) == []


def test_note_seen_resets_the_age_and_watches_a_lost_node_again(
    cache: NodeCache, clock: FakeClock,
) -> None:
    clock.advance(TIMEOUT_S + 1.0)
    cache.note_seen("node-b")
    assert cache.heartbeat_ages()["node-b"] == 0.0
    assert cache.stale(TIMEOUT_S) == ["node-a"]
    clock.advance(TIMEOUT_S + 1.0)
    assert cache.stale(TIMEOUT_S) == ["node-a", "node-b"]


def test_note_seen_of_a_new_node_starts_watching_it(cache: NodeCache, clock: FakeClock) -> None:
    cache.note_seen("node-new")
    assert cache.heartbeat_ages()["node-new"] == 0.0
    assert cache.state_of("node-new") is None  # heard from, but no state until registered


def test_note_registered_never_overwrites_a_cached_state(cache: NodeCache) -> None:
    cache.note_registered("node-a", "registered")
    assert cache.state_of("node-a") is NodeState.READY
    cache.note_registered("node-new", "registered")
    assert cache.state_of("node-new") is NodeState.REGISTERED
    assert cache.state_reasons()["node-new"] == ("registered", "")


def test_apply_follows_transitions_into_and_out_of_unreachable(cache: NodeCache) -> None:
    cache.apply(row("node-a", NodeState.READY, NodeState.UNREACHABLE, "silent for 31 s"))
    assert cache.state_of("node-a") is NodeState.UNREACHABLE
    assert cache.state_reasons()["node-a"] == ("unreachable", "silent for 31 s")
    assert cache.unreachable() == frozenset({"node-a", "node-b"})
    cache.apply(row("node-b", NodeState.UNREACHABLE, NodeState.PREFLIGHT, "heard from"))
    assert cache.state_of("node-b") is NodeState.PREFLIGHT
    assert cache.unreachable() == frozenset({"node-a"})
    assert cache.state_counts()["unreachable"] == 1 and cache.state_counts()["preflight"] == 1


def test_readers_return_copies(cache: NodeCache) -> None:
    reasons, ages, unreachable = cache.state_reasons(), cache.heartbeat_ages(), cache.unreachable()
    cache.apply(row("node-a", NodeState.READY, NodeState.DRAINED, "operator"))
    cache.note_seen("node-new")
    assert reasons["node-a"] == ("ready", "passed preflight")
    assert "node-new" not in ages
    assert unreachable == frozenset({"node-b"})
