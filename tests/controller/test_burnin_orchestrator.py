"""The burn-in loop against a fake controller: real SQLite store, scripted agents.

`FakeFleet` stands in for the FleetService seam (BurninHost): directives go to scripted agents
that answer after a delay (or never), the answers resolve like committed DirectiveResults, and
reads/writes run on a real FleetStore, so the evidence the gate reads is the real thing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import pytest

from controller.burnin.groups import Group, Member
from controller.burnin.orchestrator import directive_for, run_burnin
from controller.burnin.params import BurninDefaults, params_from_request
from controller.fleet.gate import gate
from controller.fleet.model import EvidenceKind, GatePolicy
from controller.server.directives import DirectiveOutcome, NotConnected
from controller.server.preflight import read_snapshot
from controller.store import FleetStore, NodeIdentity
from controller.store.codec import rails_by_gpu
from gpufleet_common.clock import SystemClock
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


async def test_with_a_baseline_age_a_node_alone_is_judged_against_recent_verdicts(
    store: FleetStore,
) -> None:
    for name in FIVE:
        register(store, name, "d0")
    fleet = FakeFleet(store, {n: healthy(4.0) for n in FIVE[:4]} | {"n5": healthy(1.0)})
    await collect(run_burnin(fleet, params_from_request(request(nodes=list(FIVE[:4])), DEFAULTS)))
    alone = params_from_request(request(nodes=["n5"]), DEFAULTS)
    results = []
    for age in (0.0, 1e-6, 3600.0):  # none; only verdicts younger than 1 µs (none); an hour
        _, report = await collect(run_burnin(fleet, replace(alone, baseline_age_s=age)))
        results.append((report.nodes[0].check, report.nodes[0].cohort_median_gbps))
    assert results == [("burnin", 0.0), ("burnin", 0.0), ("burnin_outlier", 4.0)]
    evidence = store.latest_evidence("n5", "burnin")
    assert evidence is not None and evidence.detail["baseline_verdicts"] == 4


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


# ---------------------------------------------------------------- cross-domain pairs


def rail(gpu: int) -> dict[str, object]:
    return {"device": f"mlx5_{gpu}", "port": 1, "state": "ACTIVE", "rate_gbps": 400.0, "gpu": gpu}


def phase_of(d: fleet_pb2.RunBurnIn) -> str:
    """"single", "multi" or "cross" from a directive's burnin_id ("<id>-<phase>-<i>")."""
    return d.burnin_id.split("-")[-3]


def per_phase(speeds: dict[str, float], fails_in: str = "") -> Script:
    """Measures speeds[phase]; fails with a connection error in phase `fails_in`."""
    def run(d: fleet_pb2.RunBurnIn) -> fleet_pb2.BurnInResult | None:
        if phase_of(d) == fails_in:
            return fleet_pb2.BurnInResult(burnin_id=d.burnin_id, backend="gloo",
                                          error="ranks failed [(1, 1)]: connection reset")
        return healthy(speeds[phase_of(d)])(d)
    return run


async def test_cross_domain_pairs_nodes_that_passed_across_domains_on_their_rails(
    store: FleetStore,
) -> None:
    layout = {"a1": "d0", "a2": "d0", "b1": "d1", "b2": "d1", "c1": "d2", "e1": "d3", "e2": "d3"}
    for name, domain in layout.items():
        register(store, name, domain)
    store.register_node(NodeIdentity(  # a1 reports its rails (GPU i -> mlx5_i), the rest none
        name="a1", hostname="sim-host", sku="gb300", driver_version="570.1", nvlink_domain="d0",
        gpus=tuple({"index": i, "uuid": f"GPU-a1-{i}"} for i in range(4)),
        rails=tuple(rail(i) for i in range(4))), 2.0)
    # NVLink groups run at 8 GB/s, the scale-out pairs at about 1: judged apart, both pass
    speeds = {"single": 4.0, "multi": 8.0, "cross": 1.0}
    scripts = {n: per_phase(speeds) for n in layout}
    scripts["e2"] = per_phase(speeds, fails_in="multi")  # d3's group fails: d3 is not paired
    scripts["b2"] = per_phase(speeds, fails_in="cross")  # its pair with a2 fails
    fleet = FakeFleet(store, scripts)
    params = params_from_request(request(all=True, cross_domain=True, master_port=31000),
                                 DEFAULTS)
    assert params.multi_node  # cross_domain implies the domain pass
    progress, report = await collect(run_burnin(fleet, params, burnin_id="b-x"))

    phases = [p.phase for p in progress]
    assert phases.index("cross-domain") > max(i for i, p in enumerate(phases) if p == "multi-node")
    cross = sorted((n, d) for n, d in fleet.sent if phase_of(d) == "cross")
    assert [(n, d.rank_offset, d.world_size, d.local_ranks) for n, d in cross] == [
        ("a1", 0, 4, 2), ("a2", 0, 4, 2), ("b1", 2, 4, 2), ("b2", 2, 4, 2)]
    # three domain groups used 31000-31002; pairs count up after them, one port per pair
    assert {n: d.master_port for n, d in cross} == {"a1": 31003, "b1": 31003,
                                                    "a2": 31004, "b2": 31004}
    rails = {n: d.options.get("rails") for n, d in cross}
    assert rails == {"a1": "mlx5_0/1,mlx5_1/1", "a2": None, "b1": None, "b2": None}
    assert all("rails" not in d.options for _, d in fleet.sent if phase_of(d) != "cross")

    groups = {g.node: g for g in report.groups}
    assert sorted(groups) == ["domain:d0", "domain:d1", "domain:d3", "pair:a1+b1", "pair:a2+b2"]
    assert not groups["domain:d3"].passed
    ok_pair, bad_pair = groups["pair:a1+b1"], groups["pair:a2+b2"]
    assert list(ok_pair.members) == ["a1", "b1"] and ok_pair.passed
    assert ok_pair.busbw_gbps == 1.0  # not an outlier of the 8 GB/s NVLink groups
    assert (bad_pair.passed, bad_pair.check) == (False, "burnin_failed")
    assert bad_pair.message == ("burn-in did not complete: b2: ranks failed [(1, 1)]: "
                                "connection reset")
    assert "e1: its group domain:d3 failed, so it is kept out of cross-domain pairs" in report.notes
    assert "e2: its group domain:d3 failed, so it is kept out of cross-domain pairs" in report.notes
    assert ("c1: no cross-domain pair (NVLink domain d2 has no partner domain in this pass "
            "(an odd number of domains))") in report.notes

    # a pair's verdict is each member's latest burn-in evidence (what the gate reads)
    for node, verdict, group in (("a1", "ok", "pair:a1+b1"), ("b2", "critical", "pair:a2+b2"),
                                 ("e1", "critical", "domain:d3"), ("c1", "ok", "c1")):
        evidence = store.latest_evidence(node, "burnin")
        assert evidence is not None
        assert (evidence.verdict, evidence.detail["group"]) == (verdict, group)
    assert ok_pair.evidence_id == ",".join(
        str(store.latest_evidence(n, "burnin").id) for n in ("a1", "b1"))  # type: ignore[union-attr]


async def test_without_cross_domain_no_pairs_are_run(store: FleetStore) -> None:
    for name, domain in (("a1", "d0"), ("b1", "d1")):
        register(store, name, domain)
    fleet = FakeFleet(store, {n: healthy(2.0) for n in ("a1", "b1")})
    _, report = await collect(run_burnin(fleet, params_from_request(
        request(all=True, multi_node=True), DEFAULTS)))
    assert list(report.groups) == [] and {phase_of(d) for _, d in fleet.sent} == {"single"}


def test_rails_by_gpu_and_the_directive_carry_each_local_ranks_rail() -> None:
    reported = [rail(1), {"device": "mlx5_9", "port": 2, "gpu": 3},
                {"device": "mlx5_s", "port": 1, "gpu": None},  # storage NIC: no GPU affinity
                {"device": "", "port": 1, "gpu": 0}]
    assert rails_by_gpu(reported) == ("", "mlx5_1/1", "", "mlx5_9/2")
    assert rails_by_gpu([]) == ()
    group = Group("pair:a+b", (Member("a", 0, 2, ("mlx5_0/1", "")), Member("b", 2, 2)),
                  "h", 30000, "d0+d1")
    params = params_from_request(request(all=True), DEFAULTS)
    a = directive_for(group, group.members[0], params, "b-1").run_burnin
    b = directive_for(group, group.members[1], params, "b-1").run_burnin
    assert dict(a.options) == {"rails": "mlx5_0/1,"} and dict(b.options) == {}
    assert (a.world_size, b.rank_offset, b.master_port) == (4, 2, 30000)
    # an operator's own rails option for the node wins (e.g. to force one HCA)
    forced = params_from_request(request(nodes=["a"], node_options={"a": "rails=mlx5_5/1"}),
                                 DEFAULTS)
    assert dict(directive_for(group, group.members[0], forced, "b-1").run_burnin.options) == {
        "rails": "mlx5_5/1"}
