"""Fleet-level checks: drift from the per-SKU majority, GPU counts, heartbeat staleness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from controller.fleet.fleet_checks import check_fleet, drift, gpu_count, stale_nodes
from controller.fleet.model import FleetFinding, NodeInventory, Severity


def inv(name: str, sku: str = "h100_sxm", gpus: int = 8, **components: str) -> NodeInventory:
    return NodeInventory(name, sku, gpus, components)


def flagged(findings: list[FleetFinding]) -> list[tuple[str | None, str, str]]:
    return [(f.node, f.check, f.value) for f in findings]


def test_uniform_fleet_has_no_drift() -> None:
    nodes = [inv(f"n{i}", driver="570.1", vbios="96.00.1") for i in range(4)]
    assert drift(nodes) == []


def test_minority_driver_is_flagged_against_majority() -> None:
    nodes = [inv("a", driver="570.1"), inv("b", driver="570.1"), inv("c", driver="535.2")]
    (finding,) = drift(nodes)
    assert finding.node == "c"
    assert finding.check == "driver_drift"
    assert finding.severity is Severity.WARN
    assert (finding.value, finding.expected, finding.sku) == ("535.2", "570.1", "h100_sxm")
    assert finding.message == "driver 535.2 differs from the h100_sxm majority 570.1 (2 of 3 nodes)"


def test_majority_is_per_sku() -> None:
    nodes = [
        inv("h1", driver="570.1"),
        inv("h2", driver="570.1"),
        inv("g1", sku="gb300", gpus=4, driver="580.0"),
        inv("g2", sku="gb300", gpus=4, driver="580.0"),
        inv("g3", sku="gb300", gpus=4, driver="570.1"),
    ]
    assert flagged(drift(nodes)) == [("g3", "driver_drift", "570.1")]


def test_majority_is_per_component() -> None:
    nodes = [
        inv("a", driver="570.1", vbios="96.1"),
        inv("b", driver="570.1", vbios="96.2"),
        inv("c", driver="535.2", vbios="96.2"),
    ]
    assert flagged(drift(nodes)) == [("c", "driver_drift", "535.2"), ("a", "vbios_drift", "96.1")]


def test_tie_is_explained_once_and_flags_only_outsiders() -> None:
    nodes = [
        inv("a", driver="570.1"),
        inv("b", driver="570.1"),
        inv("c", driver="535.2"),
        inv("d", driver="535.2"),
        inv("e", driver="550.0"),
    ]
    findings = drift(nodes)
    assert flagged(findings) == [(None, "driver_drift", ""), ("e", "driver_drift", "550.0")]
    tie = findings[0]
    assert (
        tie.message
        == "no majority driver among 5 h100_sxm nodes: 535.2 on 2, 570.1 on 2, 550.0 on 1"
    )
    assert findings[1].expected == "535.2 or 570.1"


def test_unreported_component_is_not_drift() -> None:
    nodes = [inv("a", driver="570.1"), inv("b", driver="570.1"), inv("c", driver="")]
    assert drift(nodes) == []


def test_missing_gpu_is_critical() -> None:
    nodes = [inv("a"), inv("b"), inv("c", gpus=7)]
    (finding,) = gpu_count(nodes)
    assert (finding.node, finding.severity, finding.action) == (
        "c",
        Severity.CRITICAL,
        "reboot_node",
    )
    assert finding.message == "reports 7 GPUs; the h100_sxm majority is 8 (2 of 3 nodes)"


def test_extra_gpus_warn() -> None:
    (finding,) = gpu_count([inv("a"), inv("b"), inv("c", gpus=9)])
    assert (finding.node, finding.severity) == ("c", Severity.WARN)


def test_gpu_count_tie_expects_the_highest() -> None:
    (finding,) = gpu_count([inv("a", gpus=8), inv("b", gpus=7)])
    assert finding.node == "b"
    assert "no h100_sxm majority (7 on 1, 8 on 1), expecting the highest tied count 8" in (
        finding.message
    )


def test_gpu_count_is_per_sku() -> None:
    assert gpu_count([inv("h", gpus=8), inv("g", sku="gb300", gpus=4)]) == []


def test_check_fleet_combines_both() -> None:
    nodes = [inv("a", driver="1"), inv("b", driver="1"), inv("c", gpus=6, driver="2")]
    assert flagged(check_fleet(nodes)) == [("c", "gpu_count", "6"), ("c", "driver_drift", "2")]


@pytest.mark.parametrize(
    ("last_seen", "now", "timeout", "expected"),
    [
        ({}, 100.0, 10.0, []),
        ({"a": 95.0, "b": 80.0, "c": 90.0}, 100.0, 10.0, ["b"]),
        ({"b": 50.0, "a": 50.0}, 100.0, 10.0, ["a", "b"]),
        ({"future": 200.0}, 100.0, 10.0, []),
    ],
)
def test_stale_nodes(
    last_seen: dict[str, float], now: float, timeout: float, expected: list[str]
) -> None:
    assert stale_nodes(last_seen, now, timeout) == expected


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan")])
def test_stale_nodes_refuses_bad_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="heartbeat timeout must be > 0"):
        stale_nodes({"a": 0.0}, 100.0, timeout)


_inventory = st.lists(
    st.builds(
        NodeInventory,
        name=st.text("abcdef", min_size=1, max_size=4),
        sku=st.sampled_from(["h100", "gb300"]),
        gpu_count=st.integers(0, 8),
        components=st.fixed_dictionaries(
            {"driver": st.sampled_from(["", "1", "2", "3"]), "vbios": st.sampled_from(["x", "y"])}
        ),
    ),
    max_size=12,
    unique_by=lambda n: n.name,
)


@settings(max_examples=200, deadline=None)
@given(nodes=_inventory, data=st.data())
def test_results_do_not_depend_on_input_order(
    nodes: list[NodeInventory], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(nodes))
    assert check_fleet(nodes) == check_fleet(shuffled)


@settings(max_examples=200, deadline=None)
@given(nodes=_inventory)
def test_a_strict_majority_is_never_flagged(nodes: list[NodeInventory]) -> None:
    for finding in drift(nodes):
        if finding.node is None:
            continue
        same = [n for n in nodes if n.sku == finding.sku]
        holders = sum(1 for n in same if n.components.get(finding.component) == finding.value)
        reported = sum(1 for n in same if n.components.get(finding.component))
        assert holders * 2 <= reported


@settings(max_examples=200, deadline=None)
@given(seen=st.dictionaries(st.text(max_size=3), st.floats(0, 200)), timeout=st.floats(1, 100))
def test_stale_means_older_than_timeout(seen: dict[str, float], timeout: float) -> None:
    stale = set(stale_nodes(seen, 150.0, timeout))
    assert stale == {name for name, t in seen.items() if 150.0 - t > timeout}
