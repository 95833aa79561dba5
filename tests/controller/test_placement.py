"""Topology-aware placement: EP groups inside one NVLink domain, rail alignment, spares held."""

from __future__ import annotations

from collections import defaultdict

from controller.supervisor.placement import (
    Candidate,
    Layout,
    Placement,
    Unsatisfiable,
    place,
    replace_node,
)


def _fleet(domains: int, per_domain: int, gpus: int = 4) -> list[Candidate]:
    return [
        Candidate(f"gb300-d{d}-t{t:02d}", f"domain-{d}", gpus,
                  {i: f"mlx5_{i}" for i in range(gpus)})
        for d in range(domains) for t in range(per_domain)
    ]


def _check_groups_in_one_domain(p: Placement, ep_size: int) -> None:
    domains_of_group: dict[int, set[str]] = defaultdict(set)
    for node in p.nodes:
        domains_of_group[node.ep_group].add(node.domain)
        for slot in node.ranks:
            assert slot.rank // ep_size == node.ep_group
    assert all(len(d) == 1 for d in domains_of_group.values())


def test_deepseek_v3_671b_on_gb300_nvl72() -> None:
    """8,192 GPUs: 128 EP groups of 64 = 16 trays each, one per 18-tray domain, 2 spares each."""
    layout = Layout(world_size=8192, ranks_per_node=4, ep_size=64, spares_per_domain=2)
    p = place(_fleet(128, 18), layout)
    assert isinstance(p, Placement)
    assert len(p.nodes) == 2048
    ranks = sorted(s.rank for n in p.nodes for s in n.ranks)
    assert ranks == list(range(8192))
    _check_groups_in_one_domain(p, 64)
    assert len(p.spares) == 128 and all(len(s) == 2 for s in p.spares.values())


def test_local_rank_i_uses_gpu_i_and_rail_i() -> None:
    p = place(_fleet(1, 4), Layout(world_size=8, ranks_per_node=4, ep_size=8))
    assert isinstance(p, Placement)
    for node in p.nodes:
        assert [(s.local_rank, s.gpu, s.rail) for s in node.ranks] == [
            (i, i, f"mlx5_{i}") for i in range(4)]


def test_group_never_straddles_domains_even_when_total_capacity_suffices() -> None:
    # two domains of 3 nodes: 6 nodes in total, but a 4-node group fits in neither
    result = place(_fleet(2, 3), Layout(world_size=16, ranks_per_node=4, ep_size=16))
    assert isinstance(result, Unsatisfiable)
    assert "need 1 expert-parallel groups of 4 nodes" in result.reasons[0]
    assert any("domain-0: 3 nodes → 0 group(s)" in r for r in result.reasons)


def test_spares_reduce_capacity_and_are_reported() -> None:
    layout = Layout(world_size=32, ranks_per_node=4, ep_size=16, spares_per_domain=1)
    assert isinstance(place(_fleet(2, 4), layout), Unsatisfiable)  # 4 − 1 spare < 4
    p = place(_fleet(2, 5), layout)
    assert isinstance(p, Placement)
    assert {d: len(s) for d, s in p.spares.items()} == {"domain-0": 1, "domain-1": 1}


def test_nodes_with_too_few_gpus_are_skipped() -> None:
    fleet = [*_fleet(1, 2), Candidate("small", "domain-0", 2)]
    p = place(fleet, Layout(world_size=8, ranks_per_node=4, ep_size=8))
    assert isinstance(p, Placement)
    assert "small" not in p.node_names


def test_bad_layout_lists_every_problem() -> None:
    result = place(_fleet(1, 4), Layout(world_size=10, ranks_per_node=4, ep_size=6,
                                        spares_per_domain=-1))
    assert isinstance(result, Unsatisfiable)
    assert len(result.reasons) == 3


def test_replace_node_keeps_ranks_and_consumes_the_spare() -> None:
    p = place(_fleet(1, 3), Layout(world_size=8, ranks_per_node=4, ep_size=8,
                                   spares_per_domain=1))
    assert isinstance(p, Placement)
    failed = p.nodes[1].node
    spare = p.spares["domain-0"][0]
    q = replace_node(p, failed, spare)
    assert q.nodes[1].node == spare and q.nodes[1].ranks == p.nodes[1].ranks
    assert q.spares["domain-0"] == ()


def test_deterministic() -> None:
    layout = Layout(world_size=64, ranks_per_node=4, ep_size=16, spares_per_domain=1)
    fleet = _fleet(3, 6)
    assert place(fleet, layout) == place(list(reversed(fleet)), layout)
