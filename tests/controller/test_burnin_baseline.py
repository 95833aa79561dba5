"""Which stored burn-in verdicts form the cohort baseline of a few nodes burned in alone (pure
selection, then read from a real SQLite store)."""

from __future__ import annotations

from typing import Any

from controller.burnin.baseline import baseline_values, read_baseline
from controller.store import EvidenceRow, FleetStore, NodeIdentity

M = 1 << 20
LABEL = "gb300/570.1/gloo/2"


def verdict(node: str, busbw: float = 4.0, *, verdict: str = "ok", taken_at: float = 100.0,
            **changes: Any) -> EvidenceRow:
    """A judged single-node verdict as the orchestrator stores it; `changes` edit its detail."""
    detail: dict[str, Any] = {
        "judged": True, "passed": verdict == "ok", "members": [node], "cohort": LABEL,
        "busbw_gbps": busbw, "sizes": [{"bytes": M}, {"bytes": 4 * M}, {"bytes": 4 * M}]}
    return EvidenceRow(1, node, "burnin", verdict, detail | changes, taken_at, "burnin:b-1")


def test_only_recent_passing_single_node_verdicts_of_the_same_largest_size_count() -> None:
    rows = [
        verdict("a", 4.0), verdict("b", 4.2),
        verdict("c", cohort="gb300/570.1/gloo/4"),  # another cohort: kept under its own label
        verdict("old", taken_at=10.0),  # older than the baseline's age
        verdict("bad", 1.0, verdict="critical"),  # failed
        verdict("raw", judged=None),  # the agent's own result, never judged
        verdict("pair", members=["pair", "x"]),  # a group's number, not a single node's
        verdict("small", sizes=[{"bytes": M}]),  # measured up to another size
        verdict("none", busbw_gbps=None), verdict("nolabel", cohort=None),
        EvidenceRow(2, "h", "health", "ok", {}, 100.0, "report:1"),
    ]
    got = baseline_values(rows, since=50.0, largest_bytes=4 * M)
    assert got == {LABEL: [4.0, 4.2], "gb300/570.1/gloo/4": [4.0]}
    assert baseline_values(rows, since=50.0, largest_bytes=M) == {LABEL: [4.0]}


def add(store: FleetStore, name: str, *, sku: str = "gb300", state: str = "ready") -> None:
    store.register_node(NodeIdentity(name=name, hostname=name, sku=sku, driver_version="570.1",
                                     gpus=({"index": 0, "uuid": f"GPU-{name}"},)), 1.0,
                        initial_state=state)


def put(store: FleetStore, row: EvidenceRow) -> None:
    store.add_evidence(row.node, row.kind, row.verdict, row.detail, row.taken_at, row.source)


def test_read_takes_each_nodes_newest_verdict_of_the_skus_asked_for(store: FleetStore) -> None:
    for name in ("a", "b", "busy", "gone", "retested"):
        add(store, name, state="retired" if name == "gone" else "ready")
    add(store, "h100", sku="h100_sxm")
    for name in ("a", "busy", "gone", "retested", "h100"):
        put(store, verdict(name, 4.0))
    put(store, verdict("b", 4.5, taken_at=90.0))
    put(store, verdict("busy", 1.0, verdict="critical", taken_at=110.0))  # newer, failed
    got = read_baseline(store, skus={"gb300"}, exclude={"retested"}, since=50.0,
                        largest_bytes=4 * M)
    assert got == {LABEL: [4.0, 4.5]}  # a, b: not the retired, excluded or other-SKU nodes
    assert read_baseline(store, skus={"gb300", "h100_sxm"}, exclude=(), since=95.0,
                         largest_bytes=4 * M) == {LABEL: [4.0, 4.0, 4.0]}  # a, retested, h100
