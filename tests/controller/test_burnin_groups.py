"""Burn-in planning (pure): single nodes all at once, NVLink-domain groups, what is left out."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from controller.burnin.groups import (
    LOOPBACK,
    Candidate,
    Member,
    Plan,
    cross_domain_plan,
    domain_plan,
    rank_rails,
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


# ---------------------------------------------------------------- cross-domain pairs


def labels(plan: Plan) -> list[str]:
    return [g.label for g in plan.groups]


@pytest.mark.parametrize(("layout", "pairs", "left_out"), [
    # domain -> nodes; the pairs planned; the nodes reported (and a word of why)
    ({"d0": ["a1", "a2"], "d1": ["b1", "b2"]},
     ["pair:a1+b1", "pair:a2+b2"], {}),
    ({"d1": ["b1"], "d0": ["a1"], "d3": ["d1n"], "d2": ["c1"]},  # sorted: d0+d1, d2+d3
     ["pair:a1+b1", "pair:c1+d1n"], {}),
    ({"d0": ["a1"], "d1": ["b1"], "d2": ["c1", "c2"]},  # odd one out: reported, not re-paired
     ["pair:a1+b1"], {"c1": "no partner domain", "c2": "no partner domain"}),
    ({"d0": ["a1", "a2", "a3"], "d1": ["b2", "b1"]},  # by sorted name; the extra one reported
     ["pair:a1+b1", "pair:a2+b2"], {"a3": "no partner: d1 has fewer nodes than d0"}),
    ({"d0": ["a1"], "d1": ["b1", "b2"]},
     ["pair:a1+b1"], {"b2": "no partner: d0 has fewer nodes than d1"}),
    ({"d0": ["a1", "a2"]}, [], {"a1": "no partner domain", "a2": "no partner domain"}),
    ({"": ["x"], "d0": ["a1"], "d1": ["b1"]}, ["pair:a1+b1"], {"x": "no NVLink domain"}),
    ({}, [], {}),
])
def test_cross_domain_plan_pairs_node_j_of_consecutive_domains(
    layout: dict[str, list[str]], pairs: list[str], left_out: dict[str, str],
) -> None:
    survivors = [node(n, d) for d, names in layout.items() for n in names]
    plan = cross_domain_plan(survivors, 0, port_base=30000)
    assert labels(plan) == pairs
    assert {s.node for s in plan.skipped} == set(left_out)
    for s in plan.skipped:
        assert left_out[s.node] in s.reason
    assert [g.master_port for g in plan.groups] == list(range(30000, 30000 + len(pairs)))


def test_a_pair_is_two_members_with_contiguous_ranks_and_rail_per_local_rank() -> None:
    a = node("a1", "d0", gpus=4, host="ha", rails=("mlx5_0/1", "mlx5_1/1", "", "mlx5_3/1"))
    b = node("b1", "d1", gpus=2, host="hb")  # reported no rails: not pinned
    (pair,) = cross_domain_plan([b, a], 0).groups
    assert (pair.label, pair.domain, pair.master_addr) == ("pair:a1+b1", "d0+d1", "ha")
    assert pair.members == (Member("a1", 0, 4, ("mlx5_0/1", "mlx5_1/1", "", "mlx5_3/1")),
                            Member("b1", 4, 2, ()))
    assert pair.world_size == 6 and pair.multi_node
    (two,) = cross_domain_plan([a, b], 2).groups  # fewer ranks than GPUs: the first rails
    assert two.members[0].rails == ("mlx5_0/1", "mlx5_1/1")
    assert rank_rails(a, 6) == ("mlx5_0/1", "mlx5_1/1", "", "mlx5_3/1", "", "")


def test_cross_domain_rendezvous_and_port_problems_leave_both_nodes_out() -> None:
    same_host = [node("a1", "d0", host="h"), node("b1", "d1", host="h")]
    assert cross_domain_plan(same_host, 1).groups[0].master_addr == LOOPBACK
    assert cross_domain_plan(same_host, 1, rendezvous_host="rdv").groups[0].master_addr == "rdv"
    nameless = [node("a1", "d0", host="x"), node("b1", "d1", host="y")]
    nameless[0] = Candidate("a1", nvlink_domain="d0", hostname="")
    plan = cross_domain_plan(nameless, 1)
    assert plan.groups == () and {s.node for s in plan.skipped} == {"a1", "b1"}
    assert all("pair a1+b1: a1 reported no hostname" in s.reason for s in plan.skipped)
    four = [node(n, d) for n, d in (("a1", "d0"), ("a2", "d0"), ("b1", "d1"), ("b2", "d1"))]
    plan = cross_domain_plan(four, 1, port_base=65535)
    assert labels(plan) == ["pair:a1+b1"]
    assert {s.reason for s in plan.skipped} == {"pair a2+b2: no port left above 65535"}
    with pytest.raises(ValueError, match="port base"):
        cross_domain_plan(four, 1, port_base=0)


@given(st.lists(st.tuples(st.sampled_from(["d0", "d1", "d2", "d3", "d4", ""]),
                          st.integers(0, 8), st.booleans()), max_size=30),
       st.integers(0, 4))
def test_every_pair_spans_two_domains_and_no_node_is_in_two(
    layout: list[tuple[str, int, bool]], ranks: int
) -> None:
    everyone = [node(f"n{i}", d, gpus=g) for i, (d, g, _) in enumerate(layout)]
    passed = [c for c, (_, _, ok) in zip(everyone, layout, strict=True) if ok]
    plan = cross_domain_plan(passed, ranks)
    domain = {c.name: c.nvlink_domain for c in passed}
    placed = [n for g in plan.groups for n in g.nodes]
    assert len(placed) == len(set(placed))  # no node in two pairs
    assert set(placed) <= set(domain)  # only nodes that passed
    assert sorted(placed + [s.node for s in plan.skipped]) == sorted(domain)
    assert len({g.master_port for g in plan.groups}) == len(plan.groups)
    for g in plan.groups:
        a, b = g.nodes
        assert domain[a] and domain[b] and domain[a] != domain[b]  # spans two domains
        assert g.label == f"pair:{a}+{b}" and g.domain == f"{domain[a]}+{domain[b]}"
        assert [m.rank_offset for m in g.members] == [0, g.members[0].local_ranks]
    # at most one domain, the last by id, goes wholly unpaired for want of a partner domain
    unpartnered = {domain[s.node] for s in plan.skipped if "no partner domain" in s.reason}
    assert len(unpartnered) <= 1
    assert all(d == max(filter(None, domain.values())) for d in unpartnered)
