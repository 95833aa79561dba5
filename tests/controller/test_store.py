"""FleetStore on a real SQLite file: schema, idempotent batches, evidence, transitions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from controller.store import (
    LATEST_VERSION,
    FleetStore,
    SchemaError,
    StaleState,
    StoredBatch,
    StoreError,
)
from protos.gpufleet.v1 import fleet_pb2
from tests.controller.conftest import identity, inbound, report, xid


def count(path: Path, sql: str) -> int:
    """A scalar read through a separate connection (what another process would see)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_open_creates_wal_database_at_latest_schema(db_path: Path) -> None:
    store = FleetStore.open(db_path)
    store.close()
    conn = sqlite3.connect(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    finally:
        conn.close()


def test_newer_schema_is_refused_with_a_clear_error(db_path: Path) -> None:
    FleetStore.open(db_path).close()
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(SchemaError, match="999 is newer"):
        FleetStore.open(db_path)


def test_register_then_reregister_keeps_state_and_seq(store: FleetStore, db_path: Path) -> None:
    first = store.register_node(identity("n1"), now=100.0)
    assert first.created and first.last_seq == 0 and first.state == "registered"
    store.store_batch([inbound("n1", report(1)), inbound("n1", report(2))])
    again = store.register_node(identity("n1", boot_id="b2"), now=200.0)
    assert not again.created and again.last_seq == 2 and again.state == "registered"
    kinds = [e.kind for e in store.events(node="n1")]
    assert "agent_restart" in kinds and "transition" in kinds
    history = store.transitions("n1")
    assert [(t.from_state, t.to_state, t.cause) for t in history] == [("", "registered", "registered")]
    assert count(db_path, "SELECT COUNT(*) FROM nodes") == 1


def test_batch_stores_reports_with_health_evidence_and_acks_max_seq(
    store: FleetStore, db_path: Path
) -> None:
    store.register_node(identity("n1"), now=1.0)
    store.register_node(identity("n2"), now=1.0)
    warn = report(2, verdict=fleet_pb2.SEVERITY_WARN, findings=2, sampled_at=50.0)
    batch = store.store_batch([
        inbound("n1", report(1, sampled_at=40.0)),
        inbound("n1", warn),
        inbound("n2", report(7)),
    ])
    assert batch.max_seq == {"n1": 2, "n2": 7}
    assert batch.duplicates == 0 and len(batch.stored) == 3
    node = store.node("n1")
    assert node is not None and node.last_seq == 2 and node.verdict == "warn"
    assert node.health_at == 50.0
    assert node.health_evidence_id is not None
    evidence = store.evidence(node.health_evidence_id)
    assert evidence is not None and evidence.kind == "health" and evidence.verdict == "warn"
    assert [f["check"] for f in evidence.detail["findings"]] == ["thermal", "thermal"]
    assert evidence.detail["findings"][0]["evidence"] == {"temperature_c": 88.5}
    (seq, stored_report), *_ = store.reports("n1")
    assert seq == 2 and len(stored_report.gpus) == 8 and stored_report.gpus[3].temperature_c == 44.0
    assert count(db_path, "SELECT COUNT(*) FROM reports") == 3


def test_replays_are_acked_but_never_duplicated(store: FleetStore, db_path: Path) -> None:
    store.register_node(identity("n1"), now=1.0)
    store.store_batch([inbound("n1", report(s)) for s in (1, 2, 3)])
    batch = store.store_batch([inbound("n1", report(s)) for s in (2, 3, 4)])
    assert batch.max_seq == {"n1": 4}
    assert batch.duplicates == 2 and [i.seq for i in batch.stored] == [4]
    assert count(db_path, "SELECT COUNT(*) FROM reports") == 4
    assert count(db_path, "SELECT COUNT(*) FROM evidence") == 4


def test_an_older_replayed_report_does_not_overwrite_newer_health(store: FleetStore) -> None:
    store.register_node(identity("n1"), now=1.0)
    store.store_batch([inbound("n1", report(5, verdict=fleet_pb2.SEVERITY_WARN, sampled_at=90.0))])
    store.store_batch([inbound("n1", report(3, sampled_at=80.0))])  # filled gap, older sample
    node = store.node("n1")
    assert node is not None and node.verdict == "warn" and node.health_at == 90.0 and node.last_seq == 5


def test_xid_event_becomes_evidence_and_a_stored_item(store: FleetStore) -> None:
    store.register_node(identity("n1"), now=1.0)
    batch = store.store_batch([inbound("n1", xid(1, code=79, gpu=3))])
    (item,) = batch.stored
    assert (item.kind, item.verdict, item.action, item.cause) == ("xid", "critical", "drain",
                                                                   "xid 79 on gpu 3")
    assert item.evidence_id is not None
    ev = store.evidence(item.evidence_id)
    assert ev is not None and ev.kind == "xid" and ev.detail["xid"] == "79"
    (event,) = [e for e in store.events(node="n1") if e.kind == "xid"]
    assert event.message.startswith("xid 79 on gpu 3")


def test_burnin_result_is_evidence_with_a_verdict(store: FleetStore) -> None:
    store.register_node(identity("n1"), now=1.0)
    msg = fleet_pb2.AgentMessage(seq=1)
    msg.result.directive_id = "d-1"
    msg.result.ok = True
    msg.result.burnin.burnin_id = "b-1"
    msg.result.burnin.sizes.add(bytes=1 << 20, busbw_gbps=0.3, wrong=1)
    (item,) = store.store_batch([inbound("n1", msg)]).stored
    assert item.kind == "result" and item.directive_id == "d-1"
    assert item.verdict == "critical"  # a wrong result fails burn-in even when the run "ok"
    latest = store.latest_evidence("n1", "burnin")
    assert latest is not None and latest.detail["wrong"] == 1


def test_a_late_raw_burnin_answer_never_outranks_the_judged_verdict(store: FleetStore) -> None:
    store.register_node(identity("n1"), now=1.0)
    judged = store.add_evidence("n1", "burnin", "critical",
                                {"burnin_id": "b-7", "judged": True, "check": "burnin_failed",
                                 "message": "timed out"}, taken_at=5.0)
    late = fleet_pb2.AgentMessage(seq=1)
    late.result.directive_id = "d-7"
    late.result.ok = True
    late.result.burnin.burnin_id = "b-7"  # the burn-in the controller already called timed out
    late.result.burnin.sizes.add(bytes=1 << 20, busbw_gbps=0.3)
    (item,) = store.store_batch([inbound("n1", late)]).stored
    assert item.evidence_id is None  # kept as an event, not as evidence
    latest = store.latest_evidence("n1", "burnin")
    assert latest is not None and latest.id == judged and latest.verdict == "critical"
    other = fleet_pb2.AgentMessage(seq=2)  # an unjudged burn-in (preflight's re-test) counts
    other.result.directive_id = "d-8"
    other.result.ok = True
    other.result.burnin.burnin_id = "b-8"
    other.result.burnin.sizes.add(bytes=1 << 20, busbw_gbps=0.3)
    (item2,) = store.store_batch([inbound("n1", other)]).stored
    assert item2.evidence_id is not None


def test_after_hook_failure_rolls_back_the_whole_batch(store: FleetStore, db_path: Path) -> None:
    store.register_node(identity("n1"), now=1.0)

    def explode(_: StoredBatch) -> None:
        raise RuntimeError("decision failed")

    with pytest.raises(RuntimeError):
        store.store_batch([inbound("n1", report(1))], after=explode)
    assert count(db_path, "SELECT COUNT(*) FROM reports") == 0
    node = store.node("n1")
    assert node is not None and node.last_seq == 0
    # and the store still works afterwards
    assert store.store_batch([inbound("n1", report(1))]).max_seq == {"n1": 1}


def test_batch_for_unregistered_node_stores_nothing(store: FleetStore, db_path: Path) -> None:
    store.register_node(identity("n1"), now=1.0)
    with pytest.raises(StoreError, match="ghost"):
        store.store_batch([inbound("n1", report(1)), inbound("ghost", report(1))])
    assert count(db_path, "SELECT COUNT(*) FROM reports") == 0


def test_transition_is_compare_and_set_and_logged(store: FleetStore) -> None:
    store.register_node(identity("n1"), now=1.0)
    row = store.record_transition("n1", "registered", "ready", cause="preflight admitted",
                                  actor="controller", at=5.0)
    assert (row.from_state, row.to_state) == ("registered", "ready")
    with pytest.raises(StaleState, match="n1 is ready"):
        store.record_transition("n1", "registered", "drained", cause="x", actor="a", at=6.0)
    node = store.node("n1")
    assert node is not None and node.state == "ready" and node.state_reason == "preflight admitted"
    assert [t.to_state for t in store.transitions("n1")] == ["registered", "ready"]
    with pytest.raises(StoreError, match="unknown node"):
        store.record_transition("nope", "ready", "drained", cause="x", actor="a", at=6.0)


def test_nodes_filters_and_events_and_audit(store: FleetStore) -> None:
    store.register_node(identity("a", sku="gb300", domain="d1"), now=1.0)
    store.register_node(identity("b", sku="h100_sxm", domain="d1"), now=2.0)
    store.register_node(identity("c", sku="gb300", domain="d2"), now=3.0)
    assert [n.name for n in store.nodes(sku="gb300")] == ["a", "c"]
    assert [n.name for n in store.nodes(nvlink_domain="d1", sku="gb300")] == ["a"]
    assert [n.name for n in store.nodes(names=["c", "b"])] == ["b", "c"]
    assert [e.node for e in store.events(since=2.0)] == ["c", "b"]
    store.audit("operator:alice", "drain", "a", 9.0, {"reason": "bad fan"})
    (entry,) = store.audit_log()
    assert (entry.actor, entry.action, entry.target, entry.detail) == (
        "operator:alice", "drain", "a", {"reason": "bad fan"})


def test_readonly_store_sees_committed_writes(store: FleetStore, db_path: Path) -> None:
    store.register_node(identity("n1"), now=1.0)
    reader = FleetStore.open(db_path, readonly=True)
    try:
        store.store_batch([inbound("n1", report(1))])
        node = reader.node("n1")
        assert node is not None and node.last_seq == 1
        with pytest.raises(sqlite3.OperationalError):
            reader.add_event("n1", "x", "y", 1.0)
    finally:
        reader.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(min_value=1, max_value=30), min_size=1, max_size=12),
                min_size=1, max_size=8))
def test_any_replay_pattern_stores_each_seq_once(tmp_path: Path, batches: list[list[int]]) -> None:
    path = tmp_path / f"prop-{abs(hash(str(batches)))}.db"
    store = FleetStore.open(path)
    try:
        store.register_node(identity("n1"), now=1.0)
        for seqs in batches:
            store.store_batch([inbound("n1", report(s)) for s in seqs])
        everything = {s for seqs in batches for s in seqs}
        stored = {seq for seq, _ in store.reports("n1", limit=1000)}
        assert stored == everything
        assert count(path, "SELECT COUNT(*) FROM reports") == len(everything)
        node = store.node("n1")
        assert node is not None and node.last_seq == max(everything)
    finally:
        store.close()
        path.unlink()


def test_prune_keeps_cited_and_latest_evidence(store: FleetStore, db_path: Path) -> None:
    store.register_node(identity("n1"), now=1.0)
    old = [inbound("n1", report(s, sampled_at=100.0 + s)) for s in (1, 2, 3)]
    old = [i._replace(received_at=100.0 + i.msg.seq) for i in old]
    critical = inbound("n1", report(4, verdict=fleet_pb2.SEVERITY_CRITICAL, findings=1,
                                    sampled_at=104.0))._replace(received_at=104.0)
    store.store_batch([*old, critical])
    ev = store.node("n1")
    assert ev is not None and ev.health_evidence_id is not None
    cited = store.record_transition("n1", "registered", "suspect", cause="critical report",
                                    actor="controller", at=104.0,
                                    evidence_id=ev.health_evidence_id - 1)  # report 3's evidence
    store.store_batch([inbound("n1", report(5))])  # fresh: received now
    deleted = store.prune(before=1000.0, limit=2)
    assert deleted == 4  # 2 reports + 2 uncited old evidence rows in the first chunk
    while store.prune(before=1000.0, limit=2):
        pass
    assert count(db_path, "SELECT COUNT(*) FROM reports") == 1  # only the fresh one
    conn = sqlite3.connect(db_path)
    kept = {int(r) for (r,) in conn.execute("SELECT id FROM evidence")}
    conn.close()
    node = store.node("n1")
    assert node is not None and node.health_evidence_id in kept  # the latest health
    assert cited.evidence_id in kept  # cited by a transition
    assert len(kept) == 2
