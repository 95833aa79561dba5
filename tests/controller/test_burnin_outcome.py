"""Burn-in bookkeeping (pure): answers -> group measurement -> judgement -> stored evidence,
and what the preflight gate makes of that evidence."""

from __future__ import annotations

from controller.burnin.groups import LOOPBACK, Candidate, Group, Member
from controller.burnin.judge import CohortKey
from controller.burnin.outcome import (
    MemberAnswer,
    answer_from,
    cohort_label,
    evidence_detail,
    judge_groups,
    judged_busbw,
    measure_group,
    no_answer,
    result_from_evidence,
    result_message,
)
from controller.fleet.gate import gate
from controller.fleet.lifecycle import NodeState
from controller.fleet.model import EvidenceKind, GatePolicy, NodeFacts, Severity
from controller.server.preflight import evidence_from_row
from controller.store import EvidenceRow
from protos.gpufleet.v1 import fleet_pb2

M = 1 << 20


def burnin(busbw: float, *, backend: str = "gloo", world: int = 2, sizes: tuple[int, ...] = (M, 4 * M),
           **kw: object) -> fleet_pb2.BurnInResult:
    result = fleet_pb2.BurnInResult(burnin_id="b-1", backend=backend, world_size=world,
                                    duration_s=1.5, **kw)  # type: ignore[arg-type]
    for i, size in enumerate(sizes):
        result.sizes.add(bytes=size, time_us=100.0, algbw_gbps=busbw / 2, busbw_gbps=busbw * (i + 1) / len(sizes))
    return result


def directive_result(payload: fleet_pb2.BurnInResult | None, ok: bool = True) -> fleet_pb2.DirectiveResult:
    result = fleet_pb2.DirectiveResult(directive_id="d-1", ok=ok, message="burn-in complete")
    if payload is not None:
        result.burnin.CopyFrom(payload)
    return result


def single(name: str, ranks: int = 2) -> Group:
    return Group(name, (Member(name, 0, ranks),), LOOPBACK, 0)


NODES = {n: Candidate(n, sku="gb300", nvlink_domain="d0", gpus=4, driver="570.1", hostname="h")
         for n in ("n1", "n2", "n3", "n4", "n5", "n6")}


def test_answers_name_what_went_wrong() -> None:
    good = answer_from("n1", True, "burn-in complete", directive_result(burnin(10.0)))
    assert good.error == "" and good.result is not None
    hung = answer_from("n1", False, "x", directive_result(burnin(
        0.0, sizes=(), timed_out=True, error="burn-in exceeded its 5 s timeout; workers killed")))
    assert hung.error == "timed out: burn-in exceeded its 5 s timeout; workers killed"
    corrupt = burnin(10.0)
    corrupt.sizes[1].wrong = 3
    assert answer_from("n1", False, "", directive_result(corrupt)).error == (
        "3 wrong all-reduce results: data corrupted on the way")
    assert answer_from("n1", False, "", directive_result(burnin(0.0, error="ranks failed [(1, -9)]"))
                       ).error == "ranks failed [(1, -9)]"
    assert answer_from("n1", True, "", directive_result(burnin(1.0, sizes=()))).error == (
        "the burn-in measured nothing")
    assert answer_from("n1", False, "unsupported directive", directive_result(None)).error == (
        "unsupported directive")
    assert answer_from("n1", False, "the stream closed before delivery", None).error == (
        "the stream closed before delivery")
    assert no_answer("n1", 35.0).error == "timed out: no answer within 35 s"


def test_the_largest_size_is_judged_and_its_repeats_give_the_median() -> None:
    sizes = [fleet_pb2.BurnInSize(bytes=b, busbw_gbps=v)
             for b, v in ((M, 9.0), (4 * M, 3.0), (4 * M, 30.0), (4 * M, 4.0))]
    assert judged_busbw(sizes) == 4.0
    assert judged_busbw(sizes[:2]) == 3.0
    assert judged_busbw([]) == 0.0


def test_a_group_fails_with_its_most_telling_member_error() -> None:
    group = Group("domain:d0", (Member("n1", 0, 2), Member("n2", 2, 2), Member("n3", 4, 2)),
                  "n1", 29500, "d0")
    answers = {"n1": no_answer("n1", 10), "n2": MemberAnswer("n2", None, "ranks failed [(0, 1)]"),
               "n3": no_answer("n3", 10)}
    measure = measure_group(group, answers)
    assert measure.error == "n2: ranks failed [(0, 1)]" and not measure.timed_out
    assert measure.sizes == () and measure.world_size == 6
    only_timeouts = measure_group(group, {"n1": no_answer("n1", 10)})
    assert only_timeouts.error == "n1: timed out: no answer within 10 s" and only_timeouts.timed_out
    ok = {n: answer_from(n, True, "", directive_result(burnin(6.0, world=6))) for n in group.nodes}
    whole = measure_group(group, ok)
    assert whole.ok and whole.busbw_gbps == 6.0 and whole.backend == "gloo"
    assert whole.duration_s == 1.5


def test_cohort_outlier_is_critical_and_peers_pass() -> None:
    groups = [single(n) for n in NODES]
    speeds = {"n1": 4.0, "n2": 4.1, "n3": 4.2, "n4": 4.3, "n5": 4.4, "n6": 1.0}
    measures = {g.label: measure_group(g, {g.label: answer_from(
        g.label, True, "", directive_result(burnin(speeds[g.label])))}) for g in groups}
    judged = judge_groups(groups, measures, NODES)
    assert judged["n6"].check == "burnin_outlier" and judged["n6"].severity == "critical"
    assert not judged["n6"].passed
    assert all(judged[n].passed for n in ("n1", "n2", "n3", "n4", "n5"))
    assert judged["n6"].cohort_median_gbps == 4.2  # its peers' median (leave-one-out)
    assert judged["n1"].cohort_median_gbps == 4.2  # n2..n6


def test_the_sku_floor_applies_to_nccl_results_only() -> None:
    nccl, gloo = single("n1"), single("n2")
    measures = {
        "n1": measure_group(nccl, {"n1": answer_from("n1", True, "", directive_result(
            burnin(300.0, backend="nccl", nccl_version="2.21.5")))}),
        "n2": measure_group(gloo, {"n2": answer_from("n2", True, "", directive_result(
            burnin(0.5)))}),
    }
    judged = judge_groups([nccl, gloo], measures, NODES)
    assert judged["n1"].check == "burnin_below_floor"  # gb300 promises 700 GB/s over NVLink
    assert judged["n2"].passed  # CPU gloo: no floor, and a cohort of one is not judged


def test_single_nodes_and_groups_are_separate_cohorts() -> None:
    groups = [single(n, ranks=4) for n in ("n1", "n2", "n3")]
    groups.append(Group("domain:d0", (Member("n4", 0, 2), Member("n5", 2, 2)), "h", 29500, "d0"))
    measures = {g.label: measure_group(g, {n: answer_from(n, True, "", directive_result(
        burnin(10.0 if g.multi_node else 4.0, world=4))) for n in g.nodes}) for g in groups}
    judged = judge_groups(groups, measures, NODES)
    # same world size, but the key differs: the group is not judged with the single nodes
    assert all(j.cohort_median_gbps is None for j in judged.values())


def test_evidence_detail_makes_the_gate_reject_with_the_reason_and_its_age() -> None:
    group = single("n6")
    measure = measure_group(group, {"n6": answer_from("n6", True, "", directive_result(burnin(1.0)))})
    peers = [single(n) for n in ("n1", "n2", "n3", "n4")]
    measures = {g.label: measure_group(g, {g.label: answer_from(g.label, True, "", directive_result(
        burnin(4.0)))}) for g in peers} | {"n6": measure}
    judged = judge_groups([*peers, group], measures, NODES)
    detail = evidence_detail(judged["n6"], group, measure, "b-7")
    assert detail["error"].startswith("burnin_outlier: all-reduce busbw 1.00 GB/s is 75% below")
    assert [s["busbw_gbps"] for s in detail["sizes"]] == [0.5, 1.0]
    assert (detail["cohort_median_gbps"], detail["members"], detail["burnin_id"]) == (4.0, ["n6"], "b-7")
    row = EvidenceRow(42, "n6", "burnin", judged["n6"].severity, detail, 1000.0, "burnin:b-7")
    policy = GatePolicy(required=frozenset({EvidenceKind.BURNIN}))
    verdict = gate(NodeFacts("n6", NodeState.READY), [evidence_from_row(row)], policy, 1090.0)
    assert not verdict.admitted
    (reason,) = verdict.reasons
    assert (reason.check, reason.severity, reason.evidence_id) == ("burnin", Severity.CRITICAL, "42")
    assert reason.message.startswith("burn-in failed: burnin_outlier: all-reduce busbw 1.00 GB/s")
    assert reason.evidence_age_s == 90.0
    passed = evidence_detail(judged["n1"], peers[0], measures["n1"], "b-7")
    assert "error" not in passed
    ok_row = EvidenceRow(43, "n1", "burnin", "ok", passed, 1000.0, "burnin:b-7")
    assert gate(NodeFacts("n1", NodeState.READY), [evidence_from_row(ok_row)], policy, 1090.0).admitted


def test_a_group_verdict_names_the_group_and_the_wire_result_carries_the_numbers() -> None:
    group = Group("domain:d0", (Member("n1", 0, 2), Member("n2", 2, 2)), "h", 29500, "d0")
    measure = measure_group(group, {"n1": no_answer("n1", 3), "n2": no_answer("n2", 3)})
    (judgement,) = judge_groups([group], {group.label: measure}, NODES).values()
    detail = evidence_detail(judgement, group, measure, "b-1")
    assert detail["timed_out"] is True
    assert detail["error"] == ("burnin_failed: in group domain:d0 (n1, n2): burn-in did not "
                               "complete: n1: timed out: no answer within 3 s")
    wire = result_message(judgement, group, measure, "7,8")
    assert (wire.node, list(wire.members), wire.passed) == ("domain:d0", ["n1", "n2"], False)
    assert wire.severity == fleet_pb2.SEVERITY_CRITICAL and wire.evidence_id == "7,8"


def test_stored_evidence_reads_back_as_the_wire_result() -> None:
    group = single("n1")
    measure = measure_group(group, {"n1": answer_from("n1", True, "", directive_result(burnin(2.0)))})
    (judgement,) = judge_groups([group], {"n1": measure}, NODES).values()
    detail = evidence_detail(judgement, group, measure, "b-1")
    assert result_from_evidence(9, judgement.severity, detail) == result_message(
        judgement, group, measure, "9")
    agents_own = result_from_evidence(3, "critical", {"error": "timed out", "sizes": []})
    assert (agents_own.passed, agents_own.check, agents_own.severity) == (
        False, "burnin", fleet_pb2.SEVERITY_CRITICAL)


def test_a_baseline_by_cohort_label_joins_single_nodes_only() -> None:
    alone, group = single("n1"), Group("domain:d0", (Member("n2", 0, 1), Member("n3", 1, 1)),
                                       "h", 29500, "d0")
    measures = {g.label: measure_group(g, {n: answer_from(n, True, "", directive_result(
        burnin(1.0))) for n in g.nodes}) for g in (alone, group)}
    label = "gb300/570.1/gloo/2"  # both have world size 2: the same cohort key
    assert judge_groups([alone], measures, NODES)["n1"].passed  # no peers at all
    judged = judge_groups([alone, group], measures, NODES, baseline={label: [4.0, 4.0, 4.0]})
    assert judged["n1"].check == "burnin_outlier" and judged["n1"].cohort_median_gbps == 4.0
    assert judged["domain:d0"].passed  # stored single-node verdicts never judge a group
    assert judge_groups([alone], measures, NODES, baseline={"gb300/570.1/gloo/4": [4.0] * 3}
                        )["n1"].passed  # another world size: not its cohort
    assert cohort_label(CohortKey("gb300", "570.1", "gloo", 2)) == label
