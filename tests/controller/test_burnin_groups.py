"""Burn-in planning (pure): single nodes all at once, NVLink-domain groups, what is left out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.burnin.groups import (
    LOOPBACK,
    Candidate,
    domain_plan,
    ranks_for,
    rendezvous_addr,
    single_node_plan,
)


def node(name: str, domain: str = "dom-a", *, gpus: int = 4, host: str = "", **kw: object) -> Candidate:
    return Candidate(name, sku="gb300", nvlink_domain=domain, gpus=gpus, driver="570",
                     hostname=host or name, **kw)  # type: ignore[arg-type]


def test_single_node_plan_runs_every_runnable_node_alone_and_reports_the_rest() -> None:
    plan = single_node_plan([
        node("a"), node("b", state="ready"), node("gone", connected=False),
        node("busy", state="allocated"), Candidate("ghost", registered=False, connected=False),
        node("dead", state="retired"), node("a"),
    ], ranks_per_node=0)
    assert [g.label for g in plan.groups] == ["a", "b"]
    for g in plan.groups:
        assert len(g.members) == 1 and g.world_size == 4 and g.members[0].rank_offset == 0
        assert (g.master_addr, g.master_port) == (LOOPBACK, 0)  # the agent picks the port
        assert not g.multi_node
    reasons = {s.node: s.reason for s in plan.skipped}
    assert reasons["gone"] == "node is not connected, so it cannot be told to burn in"
    assert reasons["busy"].startswith("node is allocated; burn-in needs one of")
    assert reasons["ghost"] == "node is not registered"
    assert reasons["dead"].startswith("node is retired")
    assert list(reasons) == ["gone", "busy", "ghost", "dead"]  # request order, once each


def test_suspect_drained_and_repair_nodes_may_be_burned_in() -> None:
    plan = single_node_plan([node(s, state=s) for s in ("suspect", "drained", "repair")], 2)
    assert [g.world_size for g in plan.groups] == [2, 2, 2]
    assert plan.skipped == ()


def test_ranks_per_node_overrides_gpu_count_and_a_gpuless_node_gets_one_rank() -> None:
    assert ranks_for(node("a", gpus=8), 0) == 8
    assert ranks_for(node("a", gpus=8), 2) == 2
    assert ranks_for(node("a", gpus=0), 0) == 1
    with pytest.raises(ValueError, match=r"ranks_per_node must be 0\.\.1024"):
        ranks_for(node("a"), -1)


def test_domain_plan_groups_each_domain_with_contiguous_ranks_and_its_own_port() -> None:
    plan = domain_plan([node("d1-b", "d1"), node("d0-b", "d0", gpus=2), node("d0-a", "d0"),
                        node("d1-a", "d1"), node("d2-a", "d2"), node("lone", "")],
                       ranks_per_node=0, port_base=31000)
    assert [g.label for g in plan.groups] == ["domain:d0", "domain:d1"]
    d0, d1 = plan.groups
    assert d0.nodes == ("d0-a", "d0-b") and d0.master == "d0-a"
    assert [(m.rank_offset, m.local_ranks) for m in d0.members] == [(0, 4), (4, 2)]
    assert d0.world_size == 6 and d1.world_size == 8
    assert (d0.master_port, d1.master_port) == (31000, 31001)
    assert d0.master_addr == "d0-a"  # members on different hosts meet at the master's host
    assert d0.multi_node
    assert {s.node: s.reason for s in plan.skipped} == {
        "lone": "reports no NVLink domain", "d2-a": "alone in NVLink domain d2 in this pass"}


def test_rendezvous_is_loopback_on_one_host_and_the_configured_host_wins() -> None:
    same = [node("a", host="box"), node("b", host="box")]
    assert rendezvous_addr(same) == LOOPBACK
    assert rendezvous_addr([node("a"), node("b")]) == "a"
    assert rendezvous_addr(same, "10.0.0.7") == "10.0.0.7"
    nameless = [Candidate("a", nvlink_domain="d", gpus=1), node("b", "d")]
    assert rendezvous_addr(nameless[::-1]) == "b"
    plan = domain_plan(nameless, ranks_per_node=1)
    assert plan.groups == ()
    assert [s.reason for s in plan.skipped] == ["domain d: a reported no hostname to rendezvous at"] * 2


def test_domain_plan_refuses_a_bad_port_base_and_runs_out_of_ports_cleanly() -> None:
    with pytest.raises(ValueError, match="port base"):
        domain_plan([], 0, port_base=0)
    plan = domain_plan([node(f"{d}-{i}", d) for d in ("x", "y") for i in range(2)], 1,
                       port_base=65535)
    assert [g.label for g in plan.groups] == ["domain:x"]
    assert {s.reason for s in plan.skipped} == {"domain y: no port left above 65535"}


@given(st.lists(st.tuples(st.sampled_from(["d0", "d1", "d2", ""]), st.integers(0, 8)),
                max_size=30),
       st.integers(0, 4))
def test_every_survivor_is_in_exactly_one_group_or_skipped(
    layout: list[tuple[str, int]], ranks: int
) -> None:
    survivors = [node(f"n{i}", d, gpus=g) for i, (d, g) in enumerate(layout)]
    plan = domain_plan(survivors, ranks)
    placed = [n for g in plan.groups for n in g.nodes]
    assert sorted(placed + [s.node for s in plan.skipped]) == sorted(c.name for c in survivors)
    assert len({g.master_port for g in plan.groups}) == len(plan.groups)
    for g in plan.groups:
        assert len(g.members) >= 2
        offsets = [m.rank_offset for m in g.members]
        assert offsets[0] == 0
        assert all(a.rank_offset + a.local_ranks == b.rank_offset
                   for a, b in zip(g.members, g.members[1:], strict=False))
        assert g.world_size == sum(m.local_ranks for m in g.members) >= 2
