"""Run records survive a controller restart: the snapshot format (pure) and the SQLite rows."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from controller.store import FleetStore
from controller.supervisor.decide import Failure, FailureKind, RunState
from controller.supervisor.keeper import RunKeeper
from controller.supervisor.ledger import Incident, StepRecord
from controller.supervisor.persist import (
    CorruptRunRecord,
    record_from_json,
    record_to_json,
)
from controller.supervisor.placement import Candidate, Layout, Placement, place
from controller.supervisor.record import RunRecord
from controller.supervisor.spec import RunSpec


def _record() -> RunRecord:
    candidates = [Candidate(f"n{d}{t}", f"dom{d}", 2, {0: "mlx5_0", 1: "mlx5_1"})
                  for d in range(2) for t in range(3)]
    placed = place(candidates, Layout(world_size=8, ranks_per_node=2, ep_size=4,
                                      spares_per_domain=1))
    assert isinstance(placed, Placement)
    spec = RunSpec(name="mini", command=("python", "-m", "train", "--steps", "{steps}"),
                   ranks_per_node=2, world_size=8, ep_size=4, checkpoint_dir="ckpt", steps=30,
                   tokens_per_step=4096, spares_per_domain=1, env={"NCCL_DEBUG": "WARN"})
    domain_of = {c.name: c.domain for c in candidates} | {"elsewhere": "dom9"}
    record = RunRecord(spec, placed, domain_of, created_at=100.0)
    record.state, record.attempt, record.restarts = RunState.RESTARTING, 2, 1
    record.reason = "rank_exit on n00: rank 1 exited with 17"
    record.master_addr, record.master_port, record.launch_ref = "10.0.0.1", 29500, "job-7"
    record.step, record.loss, record.step_time_s = 12, 2.5, 0.25
    record.exited_ok = {3, 1}
    record.failures = [Failure(FailureKind.NODE_FATAL, "n00", 130.0, "XID 79", evidence_id="9")]
    record.incidents = [Incident(110.0, 110.5, 113.0), Incident(130.0, 130.2, None)]
    record.steps = [StepRecord(1, s, 100.0 + s, 0.25) for s in range(1, 13)]
    for i in range(100):
        record.add_energy("n00/gpu0", 100.0 + i, 250_000.0 * i)
    record.log(101.0, "placed", "6 nodes", "n00")
    return record


def test_a_record_round_trips_through_its_snapshot() -> None:
    record = _record()
    back = record_from_json(record_to_json(record), record.steps, "mini")
    assert back.spec == record.spec and back.placement == record.placement
    for name in ("state", "attempt", "restarts", "reason", "master_addr", "master_port",
                 "launch_ref", "step", "loss", "step_time_s", "exited_ok", "failures",
                 "incidents", "events", "steps", "created_at", "attempt_started_at"):
        assert getattr(back, name) == getattr(record, name), name
    # only the nodes the run can name are kept, not the whole fleet's domain map
    assert "elsewhere" not in back.domain_of and back.domain_of["n00"] == "dom0"
    # the ledger does not change (energy is small enough to keep at full resolution)
    assert record.ledger(200.0) == back.ledger(200.0)
    assert back.ledger(200.0).energy_j == pytest.approx(99 * 250.0)


@pytest.mark.parametrize("loss", [float("nan"), float("inf"), -float("inf")])
def test_a_diverged_loss_round_trips(loss: float) -> None:
    record = _record()
    record.loss = loss
    back = record_from_json(record_to_json(record))
    assert repr(back.loss) == repr(loss)


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.update(format=99), "format"),
    (lambda d: d.update(state="exploded"), "exploded"),
    (lambda d: d["spec"].pop("name"), "name"),
    (lambda d: d.update(failures=[{"kind": "meteor"}]), "meteor"),
])
def test_an_unreadable_snapshot_is_a_clear_error(mutate: Callable[[dict[str, Any]], object],
                                                 needle: str) -> None:
    doc = json.loads(record_to_json(_record()))
    mutate(doc)
    with pytest.raises(CorruptRunRecord, match="stored run 'mini'") as err:
        record_from_json(json.dumps(doc), name="mini")
    assert needle in str(err.value)
    with pytest.raises(CorruptRunRecord):
        record_from_json("{not json", name="mini")


def test_the_store_keeps_snapshots_and_appends_steps(tmp_path: Path) -> None:
    store = FleetStore.open(tmp_path / "fleet.db")
    store.save_run("mini", "running", 1.0, 2.0, '{"v":1}', [(1, 1, 1.5, 0.5)], fresh=True)
    store.append_run_steps("mini", [(1, 2, 2.0, 0.5), (1, 3, 2.5, 0.5)])
    store.save_run("mini", "completed", 1.0, 3.0, '{"v":2}', [(1, 4, 3.0, 0.5)])
    store.save_run("other", "failed", 0.5, 1.0, '{"v":3}')
    runs = store.stored_runs()
    assert [r.name for r in runs] == ["mini", "other"]  # newest first
    assert runs[0].state == "completed" and runs[0].record == '{"v":2}'
    assert [s[1] for s in runs[0].steps] == [1, 2, 3, 4]
    assert [r.name for r in store.stored_runs(states=["failed"])] == ["other"]
    # a new run under the same name starts a fresh history
    store.save_run("mini", "starting", 5.0, 5.0, '{"v":4}', fresh=True)
    assert store.stored_runs(limit=1)[0].steps == ()
    store.close()
    again = FleetStore.open(tmp_path / "fleet.db", readonly=True)
    assert {r.name for r in again.stored_runs()} == {"mini", "other"}
    again.close()


def test_a_failed_save_leaves_the_previous_snapshot_whole(tmp_path: Path) -> None:
    store = FleetStore.open(tmp_path / "fleet.db")
    store.save_run("mini", "running", 1.0, 2.0, '{"v":1}', [(1, 1, 1.5, 0.5)])
    with pytest.raises(sqlite3.Error):
        store.save_run("mini", "running", 1.0, 3.0, '{"v":2}', [(1, 2)])  # type: ignore[list-item]
    (run,) = store.stored_runs()
    assert run.record == '{"v":1}' and len(run.steps) == 1
    store.close()


async def test_the_keeper_saves_loads_and_knows_what_is_unsaved(tmp_path: Path) -> None:
    store = FleetStore.open(tmp_path / "fleet.db")
    clock = iter(range(100, 200))

    async def call(fn: Callable[[FleetStore], Any]) -> Any:
        return fn(store)

    keeper = RunKeeper(call, call, lambda: float(next(clock)))
    record = _record()
    record.steps = record.steps[:5]
    assert record.unsaved_change()
    assert await keeper.save(record, fresh=True)
    assert not record.unsaved_change() and record.steps_saved == 5
    record.steps.append(StepRecord(2, 6, 107.0, 0.25))
    assert await keeper.save_steps(record) and record.steps_saved == 6
    record.state = RunState.STARTING  # a listener moved it between two ticks
    assert record.unsaved_change()
    await keeper.save(record)
    (back,) = await keeper.load()
    assert back.state is RunState.STARTING and [s.step for s in back.steps] == [1, 2, 3, 4, 5, 6]
    assert back.step == 6  # the step history is newer than the snapshot's step
    assert not back.unsaved_change() and back.steps_saved == 6
    store.save_run("broken", "running", 0.0, 0.0, "{")  # unreadable: skipped, not fatal
    assert [r.name for r in await keeper.load()] == ["mini"]
    store.close()


async def test_the_keeper_keeps_every_live_run_and_a_bounded_past(tmp_path: Path) -> None:
    store = FleetStore.open(tmp_path / "fleet.db")

    async def call(fn: Callable[[FleetStore], Any]) -> Any:
        return fn(store)

    keeper = RunKeeper(call, call, lambda: 0.0, keep=2, retain=3)

    def text(name: str) -> str:
        record = _record()
        record.spec = dataclasses.replace(record.spec, name=name)
        return record_to_json(record)

    store.save_run("live-but-quiet", "running", 0.0, 1.0, text("live-but-quiet"))  # oldest row
    for i in range(6):
        store.save_run(f"done-{i}", "completed", 0.0, 10.0 + i, text(f"done-{i}"),
                       [(1, 1, 1.0, 0.5)])
    loaded = await keeper.load()
    assert [r.name for r in loaded] == ["done-5", "done-4", "live-but-quiet"]
    assert sorted(r.name for r in store.stored_runs()) == [
        "done-3", "done-4", "done-5", "live-but-quiet"]  # 3 ended retained, the live one too
    assert store.stored_runs(states=["completed"], limit=1)[0].steps == ((1, 1, 1.0, 0.5),)
    store.close()
