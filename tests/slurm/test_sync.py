"""SlurmNodeSync over FakeSlurm and a FakeClock: start-up pass, period, failures, reports."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from controller.fleet.lifecycle import NodeState
from controller.slurm.commands import SlurmError
from controller.slurm.fake import FakeSlurm
from controller.slurm.model import SlurmNode
from controller.slurm.reconcile import Drain, FleetNodeView, Resume
from controller.slurm.sync import SlurmNodeSync, fleet_view
from controller.store.records import NodeRow, TransitionRow
from gpufleet_common.clock import FakeClock

XID = FleetNodeView(NodeState.DRAINED, "fatal_event: XID 79", 7901)
READY = FleetNodeView(NodeState.READY)


def _fake() -> FakeSlurm:
    return FakeSlurm([SlurmNode("n1", "idle"), SlurmNode("n2", "idle"),
                      SlurmNode("n3", "idle", frozenset({"drain"}), "rack work", "alice")])


def test_first_tick_syncs_then_only_every_interval() -> None:
    fake, clock = _fake(), FakeClock()
    sync = SlurmNodeSync(fake, clock, interval_s=30)
    reads: list[int] = []

    def states() -> Mapping[str, FleetNodeView]:
        reads.append(1)
        return {"n1": XID, "n2": READY, "n3": READY}

    first = sync.tick(states)
    assert first is not None and first.applied == (
        Drain("n1", "gpufleet: fatal_event: XID 79 (evidence 7901)"),)
    assert first.held_by_others == ("n3",) and first.at == clock.time()
    clock.advance(29.9)
    assert sync.tick(states) is None and len(reads) == 1  # not due: states not even read
    clock.advance(0.1)
    second = sync.tick(states)
    assert second is not None and second.applied == () and len(reads) == 2
    assert sync.last_report is second
    assert fake.calls == [("drain", "n1", "gpufleet: fatal_event: XID 79 (evidence 7901)")]


def test_failed_command_is_reported_and_retried_on_the_next_pass() -> None:
    fake, clock = _fake(), FakeClock()
    sync = SlurmNodeSync(fake, clock)
    fake.fail_next["drain"] = SlurmError(("scontrol",), "exit status 1", "slurmctld down", 1)
    report = sync.sync({"n1": XID, "n2": XID})
    assert [a.node for a, _ in report.failed] == ["n1"] and "slurmctld down" in report.failed[0][1]
    assert [a.node for a in report.applied] == ["n2"] and not report.ok
    assert any(line.startswith("FAILED drain n1") for line in report.lines())
    retry = sync.sync({"n1": XID, "n2": XID})
    assert [a.node for a in retry.applied] == ["n1"] and retry.ok


def test_unreadable_slurm_is_a_report_not_an_exception() -> None:
    fake = _fake()
    fake.fail_next["nodes"] = SlurmError(("sinfo",), "timed out after 30 s")
    report = SlurmNodeSync(fake, FakeClock()).sync({"n1": XID})
    assert report.error.startswith("sinfo: timed out") and not report.ok
    assert report.lines() == [f"could not read Slurm: {report.error}"]


def test_report_lines_say_what_happened() -> None:
    fake = _fake()
    fake.drain("n2", "gpufleet: old (evidence 1)")
    report = SlurmNodeSync(fake, FakeClock()).sync(
        {"n1": XID, "n2": READY, "n3": READY, "n7": READY})
    assert report.applied == (Drain("n1", "gpufleet: fatal_event: XID 79 (evidence 7901)"),
                              Resume("n2", "gpufleet: old (evidence 1)"))
    assert report.lines() == [
        "drain n1: gpufleet: fatal_event: XID 79 (evidence 7901)", "resume n2",
        "kept n3 out of service: drained by someone else", "n7 is not a Slurm node"]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        SlurmNodeSync(_fake(), FakeClock(), interval_s=0)
    with pytest.raises(ValueError, match="owner tag"):
        SlurmNodeSync(_fake(), FakeClock(), owner_tag="has space ")


def _row(state: str, reason: str = "") -> NodeRow:
    return NodeRow(name="n1", hostname="n1", agent_version="", sku="h100_sxm",
                   driver_version="", cuda_driver_version="", nvlink_domain="d0", rack="",
                   boot_id="", gpus=(), rails=(), state=state, state_reason=reason,
                   state_since=1.0, registered_at=1.0, last_seen=1.0, last_seq=0,
                   verdict="critical", health_evidence_id=None, health_at=None)


def test_fleet_view_takes_cause_and_evidence_of_the_transition_into_the_state() -> None:
    last = TransitionRow(9, "n1", "allocated", "drained", "fatal_event: XID 79", 7901,
                         "controller", 2.0)
    assert fleet_view(_row("drained", "fatal_event: XID 79"), last) == XID
    assert fleet_view(_row("ready", "preflight_passed"), last) == FleetNodeView(
        NodeState.READY, "preflight_passed", None)
    with pytest.raises(ValueError):
        fleet_view(_row("exploded"))
