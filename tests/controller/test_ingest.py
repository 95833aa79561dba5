"""The ingest pipeline and its lifecycle decisions: back-pressure, batching, failures."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from controller.fleet.lifecycle import IllegalTransition, NodeEvent, NodeState
from controller.server import Controller
from controller.server.decisions import (
    command_move,
    moves_for_batch,
    moves_for_lost_heartbeats,
)
from controller.server.ingest import Committed, IngestPipeline
from controller.server.store_worker import StoreWorker
from controller.store import FleetStore, Inbound, StoredItem
from gpufleet_common.clock import SystemClock
from tests.controller.conftest import RawAgent, identity, inbound, report, xid

pytestmark = pytest.mark.timeout(60)


def item(node: str, kind: str, verdict: str, action: str = "none", seq: int = 1) -> StoredItem:
    return StoredItem(node, seq, kind, 0.0, verdict, action, seq * 10, "", f"{kind} {verdict}")


# ---------------------------------------------------------------- pure decisions


def test_fatal_xid_drains_and_cites_its_evidence() -> None:
    (move,) = moves_for_batch({"a": NodeState.READY}, [item("a", "xid", "critical", "drain")])
    assert (move.from_state, move.to_state, move.event) == (
        NodeState.READY, NodeState.DRAINED, NodeEvent.FATAL_EVENT)
    assert move.evidence_id == 10


def test_moves_fold_in_order_within_a_batch() -> None:
    moves = moves_for_batch({"a": NodeState.UNREACHABLE, "b": NodeState.READY}, [
        item("a", "report", "ok", seq=1),
        item("b", "report", "critical", seq=1),
        item("b", "xid", "critical", "reset_gpu", seq=2),
        item("b", "report", "ok", seq=3),
    ])
    assert [(m.node, m.from_state.value, m.to_state.value) for m in moves] == [
        ("a", "unreachable", "registered"),
        ("b", "ready", "suspect"),
        ("b", "suspect", "drained"),
    ]


def test_quiet_messages_and_unknown_nodes_move_nothing() -> None:
    assert moves_for_batch({"a": NodeState.READY}, [
        item("a", "report", "ok"), item("a", "report", "warn"), item("a", "rank_exit", ""),
        item("ghost", "xid", "critical", "drain"),
    ]) == []
    assert moves_for_batch({"a": NodeState.DRAINED},
                           [item("a", "xid", "critical", "drain")]) == []


def test_lost_heartbeats_skip_drained_nodes() -> None:
    moves = moves_for_lost_heartbeats(
        {"a": NodeState.READY, "b": NodeState.DRAINED}, ["a", "b", "ghost"], 30.0)
    assert [(m.node, m.to_state) for m in moves] == [("a", NodeState.UNREACHABLE)]


def test_commands_raise_when_the_state_does_not_allow_them() -> None:
    with pytest.raises(IllegalTransition):
        command_move("a", NodeState.READY, NodeEvent.OPERATOR_UNDRAIN, "x")
    assert command_move("a", NodeState.DRAINED, NodeEvent.OPERATOR_DRAIN, "again") is None


# ---------------------------------------------------------------- the pipeline


@pytest.fixture
async def worker(db_path: Path) -> AsyncIterator[StoreWorker]:
    store = FleetStore.open(db_path)
    store.register_node(identity("n1"), now=1.0)
    w = StoreWorker(store, "test-writer")
    try:
        yield w
    finally:
        w.close()


async def test_full_queue_makes_senders_wait_and_nothing_is_lost(
    worker: StoreWorker, db_path: Path
) -> None:
    committed: list[Committed] = []
    pipeline = IngestPipeline(worker, SystemClock(), on_commit=committed.append,
                              on_failure=lambda items, exc: pytest.fail(str(exc)),
                              max_queue=4, max_batch=2, linger_s=0)
    pipeline.start()
    release = threading.Event()
    stall = asyncio.ensure_future(worker.call(lambda _store: release.wait(10)))
    try:
        submits = [asyncio.ensure_future(pipeline.submit(inbound("n1", report(s))))
                   for s in range(1, 11)]
        await asyncio.sleep(0.2)
        accepted = sum(f.done() for f in submits)
        assert accepted == 6  # one batch of 2 taken by the stalled writer + 4 queued
        assert pipeline.depth() == 6
    finally:
        release.set()
    await stall
    await asyncio.wait_for(asyncio.gather(*submits), 10)
    await pipeline.close()
    assert all(len(c.items) <= 2 for c in committed)
    assert [i.msg.seq for c in committed for i in c.items] == list(range(1, 11))
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM reports").fetchone() == (10,)
    conn.close()


async def test_a_failed_batch_is_reported_and_ingest_goes_on(worker: StoreWorker) -> None:
    committed: list[Committed] = []
    failed: list[list[Inbound]] = []
    pipeline = IngestPipeline(worker, SystemClock(), on_commit=committed.append,
                              on_failure=lambda items, exc: failed.append(items),
                              max_queue=16, max_batch=16, linger_s=0.05)
    pipeline.start()
    await pipeline.submit(inbound("n1", report(1)))
    await pipeline.submit(inbound("ghost", report(1)))  # not registered: the batch fails
    await asyncio.sleep(0.2)
    await pipeline.submit(inbound("n1", report(2))._replace(stream=1))  # a new stream
    await pipeline.close()
    assert [[i.node for i in batch] for batch in failed] == [["n1", "ghost"]]
    assert [[i.msg.seq for i in c.items] for c in committed] == [[2]]
    assert committed[0].batch.max_seq == {"n1": 2}


async def test_close_stores_everything_still_queued(worker: StoreWorker, db_path: Path) -> None:
    pipeline = IngestPipeline(worker, SystemClock(), on_commit=lambda c: None,
                              on_failure=lambda items, exc: None, linger_s=0.01)
    pipeline.start()
    for seq in range(1, 51):
        await pipeline.submit(inbound("n1", report(seq) if seq != 25 else xid(seq)))
    await pipeline.close()
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM reports").fetchone() == (49,)
    assert conn.execute("SELECT state FROM nodes").fetchone() == ("drained",)
    conn.close()


async def test_store_failure_ends_the_stream_unavailable_and_a_replay_recovers(
    controller: Controller, channel: grpc.aio.Channel, db_path: Path
) -> None:
    agent = RawAgent(channel)
    await agent.hello("node-a")
    await agent.send(report(1))
    await agent.until_ack(1)
    conn = sqlite3.connect(db_path)  # someone removes the node behind the controller's back
    conn.execute("DELETE FROM nodes WHERE name = 'node-a'")
    conn.commit()
    conn.close()
    await agent.send(report(2))
    code, details = await agent.status()
    assert code == grpc.StatusCode.UNAVAILABLE and "replay" in details
    again = RawAgent(channel)
    welcome = await again.hello("node-a")  # re-registers; seq 1 is still stored
    assert welcome.last_stored_seq == 0  # the node row was lost, so replay everything
    await again.send(report(1))
    await again.send(report(2))
    assert await again.until_ack(2) == 2
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT seq, COUNT(*) FROM reports GROUP BY seq").fetchall() == [
        (1, 1), (2, 1)]
    conn.close()
    await again.close()


async def test_after_a_failed_batch_later_messages_of_that_stream_are_not_stored(
    worker: StoreWorker, db_path: Path
) -> None:
    """Storing seq 3 after seq 2 failed would let an ack (or Welcome) of 3 cover the lost 2."""
    failed: list[list[Inbound]] = []
    pipeline = IngestPipeline(worker, SystemClock(), on_commit=lambda c: None,
                              on_failure=lambda items, exc: failed.append(items),
                              max_queue=16, max_batch=1, linger_s=0)
    release = threading.Event()
    stall = asyncio.ensure_future(worker.call(lambda _store: release.wait(10)))
    pipeline.start()
    first = inbound("n1", report(1))._replace(stream=7)
    doomed = inbound("ghost", report(2))._replace(stream=7)  # this batch will fail
    after = inbound("n1", report(3))._replace(stream=7)  # queued before the failure is known
    replay = inbound("n1", report(2))._replace(stream=8)  # the agent's new stream
    for item in (first, doomed, after):
        await pipeline.submit(item)
    release.set()
    await stall
    for _ in range(100):
        if failed:
            break
        await asyncio.sleep(0.01)
    await pipeline.submit(replay)
    await pipeline.close()
    assert [[i.msg.seq for i in batch] for batch in failed] == [[2]]
    assert pipeline.dropped == 1
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT seq FROM reports ORDER BY seq").fetchall() == [(1,), (2,)]
    assert conn.execute("SELECT last_seq FROM nodes").fetchone() == (2,)
    conn.close()
