"""The burn-in loop against a fake controller: real SQLite store, scripted agents.

`FakeFleet` stands in for the FleetService seam (BurninHost): directives go to scripted agents
that answer after a delay (or never), the answers resolve like committed DirectiveResults, and
reads/writes run on a real FleetStore, so the evidence the gate reads is the real thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from controller.burnin.orchestrator import run_burnin
from controller.burnin.params import BurninDefaults, params_from_request
from controller.clock import SystemClock
from controller.fleet.gate import gate
from controller.fleet.model import EvidenceKind, GatePolicy
from controller.server.directives import DirectiveOutcome, NotConnected
from controller.server.preflight import read_snapshot
from controller.store import FleetStore, NodeIdentity
from protos.gpufleet.v1 import fleet_pb2

T = TypeVar("T")
M = 1 << 20
Script = Callable[[fleet_pb2.RunBurnIn], fleet_pb2.BurnInResult | None]  # None: never answers


def healthy(busbw: float) -> Script:
    """An agent whose burn-in measures `busbw` at every size (scaled like a real sweep)."""
    def run(d: fleet_pb2.RunBurnIn) -> fleet_pb2.BurnInResult:
        result = fleet_pb2.BurnInResult(burnin_id=d.burnin_id, backend="gloo",
                                        world_size=d.world_size, duration_s=0.01)
        for size in d.sizes_bytes:
            result.sizes.add(bytes=size, time_us=size / busbw / 1e3, algbw_gbps=busbw,
                             busbw_gbps=busbw)
        return result
    return run


def hung(d: fleet_pb2.RunBurnIn) -> fleet_pb2.BurnInResult:
    return fleet_pb2.BurnInResult(burnin_id=d.burnin_id, backend="gloo", world_size=d.world_size,
                                  timed_out=True, error="burn-in exceeded its 1 s timeout; "
                                  "workers killed")


def silent(d: fleet_pb2.RunBurnIn) -> None:
    return None


@dataclass
class FakeFleet:
    """BurninHost over a real store; agents answer from `scripts` after `delay_s`."""

    store: FleetStore
    scripts: dict[str, Script]
    delay_s: float = 0.01
    clock: SystemClock = field(default_factory=SystemClock)
    disconnected: set[str] = field(default_factory=set)
    refuse_send: set[str] = field(default_factory=set)
    sent: list[tuple[str, fleet_pb2.RunBurnIn]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    _futures: dict[str, asyncio.Future[DirectiveOutcome]] = field(default_factory=dict)

    def send_directive(self, node: str, directive: fleet_pb2.Directive) -> str:
        if node in self.refuse_send:
            raise NotConnected(f"{node} is not connected")
        directive_id = f"d-{len(self.sent)}"
        self.sent.append((node, directive.run_burnin))
        future = asyncio.get_running_loop().create_future()
        self._futures[directive_id] = future
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        result = self.scripts[node](directive.run_burnin)
        if result is not None:
            asyncio.get_running_loop().call_later(self.delay_s, self._answer, directive_id,
                                                  node, result)
        return directive_id

    def _answer(self, directive_id: str, node: str, burnin: fleet_pb2.BurnInResult) -> None:
        self.in_flight -= 1
        self.answered.append(node)
        ok = not burnin.timed_out and not burnin.error
        # as the store does with every DirectiveResult: the agent's own, unjudged evidence
        self.store.add_evidence(node, "burnin", "ok" if ok else "critical",
                                {"error": burnin.error}, self.clock.time(), "result")
        result = fleet_pb2.DirectiveResult(directive_id=directive_id, ok=ok, burnin=burnin)
        self._futures[directive_id].set_result(
            DirectiveOutcome(directive_id, node, ok, "result", "", None, result))

    async def wait_directive(self, directive_id: str, timeout_s: float) -> DirectiveOutcome:
        return await asyncio.wait_for(asyncio.shield(self._futures[directive_id]), timeout_s)

    async def read(self, fn: Callable[[FleetStore], T]) -> T:
        return fn(self.store)

    async def write(self, fn: Callable[[FleetStore], T]) -> T:
        return fn(self.store)

    def connected(self, node: str) -> bool:
        return node in self.scripts and node not in self.disconnected


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FleetStore]:
    s = FleetStore.open(tmp_path / "fleet.db")
    try:
        yield s
    finally:
        s.close()


def register(store: FleetStore, name: str, domain: str, *, state: str = "registered") -> None:
    store.register_node(NodeIdentity(
        name=name, hostname="sim-host", sku="gb300", driver_version="570.1", nvlink_domain=domain,
        gpus=tuple({"index": i, "uuid": f"GPU-{name}-{i}"} for i in range(4))), 1.0,
        initial_state=state)


async def collect(updates: AsyncIterator[fleet_pb2.BurninUpdate]
                  ) -> tuple[list[fleet_pb2.PreflightProgress], fleet_pb2.BurninReport]:
    progress: list[fleet_pb2.PreflightProgress] = []
    async for update in updates:
        if update.WhichOneof("body") == "progress":
            progress.append(update.progress)
        else:
            return progress, update.result
    raise AssertionError("no report")


def request(**kw: object) -> fleet_pb2.BurninRequest:
    base: dict[str, object] = {"sizes": "1M,4M", "iters": 5, "timeout_s": 0.3, "ranks_per_node": 2}
    return fleet_pb2.BurninRequest(**(base | kw))  # type: ignore[arg-type]


DEFAULTS = BurninDefaults(answer_grace_s=0.2)
FIVE = ("n1", "n2", "n3", "n4", "n5")


async def test_single_nodes_run_all_at_once_and_the_slow_one_is_rejected_by_the_gate(
    store: FleetStore,
) -> None:
    for name in FIVE:
        register(store, name, "d0")
    speeds = {"n1": 4.0, "n2": 4.2, "n3": 3.9, "n4": 4.1, "n5": 1.0}
    fleet = FakeFleet(store, {n: healthy(v) for n, v in speeds.items()})
    params = params_from_request(request(nodes=list(FIVE)), DEFAULTS)
    progress, report = await collect(run_burnin(fleet, params, burnin_id="b-1"))

    assert fleet.most_in_flight == 5  # every directive was out before the first answer
    for _node, d in fleet.sent:
        assert (d.world_size, d.local_ranks, d.rank_offset) == (2, 2, 0)
        assert (d.master_addr, d.master_port) == ("127.0.0.1", 0)
        assert list(d.sizes_bytes) == [M, 4 * M] and d.timeout_s == 0.3
        assert d.burnin_id.startswith("b-1-single-node-")
    assert (progress[0].phase, progress[0].done, progress[0].total) == ("single-node", 0, 5)
    assert progress[-1].done == 5 and progress[-1].node in FIVE

    by_node = {r.node: r for r in report.nodes}
    assert [r.node for r in report.nodes] == list(FIVE)
    slow = by_node["n5"]
    assert (slow.passed, slow.check, slow.severity) == (False, "burnin_outlier",
                                                        fleet_pb2.SEVERITY_CRITICAL)
    assert slow.cohort_median_gbps == 4.05 and slow.busbw_gbps == 1.0  # its peers' median
    assert [s.busbw_gbps for s in slow.sizes] == [1.0, 1.0]
    assert all(by_node[n].passed for n in FIVE[:4])

    evidence = store.latest_evidence("n5", "burnin")
    assert evidence is not None and evidence.verdict == "critical"
    assert str(evidence.id) == slow.evidence_id and evidence.source == "burnin:b-1"
    assert [s["busbw_gbps"] for s in evidence.detail["sizes"]] == [1.0, 1.0]
    assert evidence.detail["cohort_median_gbps"] == 4.05
    events = store.events(node="n5")
    assert events[0].kind == "burnin"
    assert events[0].message.startswith("burn-in n5: critical, 1 GB/s busbw: all-reduce busbw "
                                        "1.00 GB/s is 75% below its cohort's median 4.05 GB/s")
    assert events[0].detail["check"] == "burnin_outlier"

    snap = read_snapshot(store, list(FIVE))
    policy = GatePolicy(required=frozenset({EvidenceKind.BURNIN}))
    now = fleet.clock.time()
    verdicts = {n: gate(snap.facts[n], snap.evidence[n], policy, now) for n in FIVE}
    assert [n for n, v in verdicts.items() if v.admitted] == list(FIVE[:4])
    (reason,) = verdicts["n5"].reasons
    assert reason.message.startswith("burn-in failed: burnin_outlier: all-reduce busbw 1.00 GB/s")
    assert reason.evidence_age_s is not None and 0 <= reason.evidence_age_s < 5


async def test_max_parallel_bounds_how_many_burn_ins_run_at_once(store: FleetStore) -> None:
    for name in FIVE:
        register(store, name, "d0")
    fleet = FakeFleet(store, {n: healthy(2.0) for n in FIVE})
    params = params_from_request(request(all=True, max_parallel=2), DEFAULTS)
    _, report = await collect(run_burnin(fleet, params))
    assert fleet.most_in_flight == 2
    assert sorted(r.node for r in report.nodes) == list(FIVE) and all(r.passed for r in report.nodes)


async def test_a_hung_or_silent_node_fails_critical_with_timed_out(store: FleetStore) -> None:
    for name in ("n1", "n2", "n3"):
        register(store, name, "d0")
    fleet = FakeFleet(store, {"n1": healthy(2.0), "n2": hung, "n3": silent})
    params = params_from_request(request(nodes=["n1", "n2", "n3"]), DEFAULTS)
    started = asyncio.get_running_loop().time()
    _, report = await collect(run_burnin(fleet, params))
    assert asyncio.get_running_loop().time() - started < 2.0  # timeout 0.3 + grace 0.2, bounded
    by_node = {r.node: r for r in report.nodes}
    assert by_node["n1"].passed
    assert by_node["n2"].check == by_node["n3"].check == "burnin_failed"
    assert by_node["n2"].message == ("burn-in did not complete: timed out: burn-in exceeded its "
                                     "1 s timeout; workers killed")
    assert by_node["n3"].message == "burn-in did not complete: timed out: no answer within 0.5 s"
    for node in ("n2", "n3"):
        assert by_node[node].severity == fleet_pb2.SEVERITY_CRITICAL
        evidence = store.latest_evidence(node, "burnin")
        assert evidence is not None and evidence.verdict == "critical"
        assert evidence.detail["timed_out"] is True
        assert evidence.detail["error"].startswith("burnin_failed: burn-in did not complete: timed out")


async def test_nodes_that_cannot_run_are_reported_and_get_no_evidence(store: FleetStore) -> None:
    register(store, "n1", "d0")
    register(store, "off", "d0")
    register(store, "busy", "d0", state="allocated")
    register(store, "flaky", "d0")
    fleet = FakeFleet(store, {"n1": healthy(2.0), "off": healthy(2.0), "busy": healthy(2.0),
                              "flaky": healthy(2.0)}, disconnected={"off"}, refuse_send={"flaky"})
    params = params_from_request(request(nodes=["n1", "ghost", "off", "busy", "flaky"]), DEFAULTS)
    _, report = await collect(run_burnin(fleet, params))
    by_node = {r.node: r for r in report.nodes}
    assert [r.node for r in report.nodes] == ["n1", "ghost", "off", "busy", "flaky"]
    for node, why in (("ghost", "not registered"), ("off", "not connected"), ("busy", "allocated")):
        assert by_node[node].check == "burnin_skipped" and why in by_node[node].message
        assert by_node[node].severity == fleet_pb2.SEVERITY_UNKNOWN and not by_node[node].passed
        assert store.latest_evidence(node, "burnin") is None
    # connected when planned, but the send failed: it was told nothing, and that is a failure
    assert by_node["flaky"].message == ("burn-in did not complete: could not start: flaky is "
                                        "not connected")
    assert [n for n, _ in fleet.sent] == ["n1"]


async def test_multi_node_groups_each_domain_of_the_nodes_that_passed(store: FleetStore) -> None:
    layout = {"a1": "d0", "a2": "d0", "a3": "d0", "b1": "d1", "b2": "d1", "c1": "d2", "c2": "d2"}
    for name, domain in layout.items():
        register(store, name, domain)
    scripts = {n: healthy(2.0) for n in layout}
    scripts["a3"] = hung  # fails alone: kept out of d0's group
    scripts["c2"] = silent  # fails alone, so c1 has no partner
    fleet = FakeFleet(store, scripts)
    params = params_from_request(request(all=True, multi_node=True, master_port=31000), DEFAULTS)
    progress, report = await collect(run_burnin(fleet, params))
    phases = [p.phase for p in progress]
    assert phases.index("multi-node") > max(i for i, p in enumerate(phases) if p == "single-node")
    groups = {g.node: g for g in report.groups}
    assert sorted(groups) == ["domain:d0", "domain:d1"]
    assert list(groups["domain:d0"].members) == ["a1", "a2"]
    assert all(g.passed for g in groups.values())
    multi = [(n, d) for n, d in fleet.sent if d.burnin_id.split("-")[-3] == "multi"]
    assert sorted((n, d.rank_offset, d.world_size) for n, d in multi) == [
        ("a1", 0, 4), ("a2", 2, 4), ("b1", 0, 4), ("b2", 2, 4)]
    assert {(n, d.master_addr, d.master_port) for n, d in multi} == {
        ("a1", "127.0.0.1", 31000), ("a2", "127.0.0.1", 31000),  # one host: loopback
        ("b1", "127.0.0.1", 31001), ("b2", "127.0.0.1", 31001)}
    assert sorted(report.notes) == [
        "a3: failed its single-node burn-in, so it is kept out of multi-node groups",
        "c1: no multi-node group (alone in NVLink domain d2 in this pass)",
        "c2: failed its single-node burn-in, so it is kept out of multi-node groups",
    ]
    member = store.latest_evidence("a1", "burnin")
    assert member is not None and member.detail["group"] == "domain:d0"
    assert member.detail["world_size"] == 4 and member.verdict == "ok"
    assert groups["domain:d0"].evidence_id == ",".join(
        str(store.latest_evidence(n, "burnin").id) for n in ("a1", "a2"))  # type: ignore[union-attr]


async def test_a_failing_group_marks_every_member_critical(store: FleetStore) -> None:
    for name in ("a1", "a2"):
        register(store, name, "d0")

    def breaks_in_groups(d: fleet_pb2.RunBurnIn) -> fleet_pb2.BurnInResult:
        if d.world_size > d.local_ranks:
            return fleet_pb2.BurnInResult(burnin_id=d.burnin_id, backend="gloo",
                                          error="ranks failed [(0, 1)]: connection reset")
        result = healthy(2.0)(d)
        assert result is not None
        return result

    fleet = FakeFleet(store, {"a1": healthy(2.0), "a2": breaks_in_groups})
    params = params_from_request(request(all=True, multi_node=True), DEFAULTS)
    _, report = await collect(run_burnin(fleet, params))
    assert all(r.passed for r in report.nodes)
    (group,) = report.groups
    assert not group.passed and group.check == "burnin_failed"
    assert group.message == "burn-in did not complete: a2: ranks failed [(0, 1)]: connection reset"
    for node in ("a1", "a2"):
        evidence = store.latest_evidence(node, "burnin")
        assert evidence is not None and evidence.verdict == "critical"
        assert evidence.detail["error"].startswith(
            "burnin_failed: in group domain:d0 (a1, a2): burn-in did not complete")
