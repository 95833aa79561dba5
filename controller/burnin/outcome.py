"""Pure burn-in bookkeeping: agents' answers -> measurements -> judged results and evidence.

A group's members each answer their RunBurnIn with the group's numbers (every rank knows them);
the group counts as one measurement. A member that fails makes the whole group fail, with the
most telling error (a crash rather than the time-outs it caused in its peers).

Judgement is `controller.burnin.judge`: results are comparable only within a cohort (SKU,
driver, backend and NCCL version, world size), and single nodes are never judged together
with multi-node groups. The absolute per-SKU floor applies to NCCL results only: gloo on CPU
(the simulation, a node without CUDA) has no floor, only its cohort.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.burnin.groups import Candidate, Group
from controller.burnin.judge import (
    DEFAULT_TARGETS,
    BurnInJudgement,
    BurnInTarget,
    CohortKey,
    Measured,
    judge,
)
from protos.gpufleet.v1 import fleet_pb2

TIMED_OUT = "timed out"
_SEVERITY = {"ok": fleet_pb2.SEVERITY_OK, "warn": fleet_pb2.SEVERITY_WARN,
             "critical": fleet_pb2.SEVERITY_CRITICAL}


@dataclass(frozen=True)
class MemberAnswer:
    """What one member's agent answered: its result, or why there is none/it is unusable."""

    node: str
    result: fleet_pb2.BurnInResult | None = None
    error: str = ""


@dataclass(frozen=True)
class GroupMeasure:
    """One group's burn-in as a whole."""

    sizes: tuple[fleet_pb2.BurnInSize, ...]
    backend: str
    nccl_version: str
    world_size: int
    duration_s: float
    error: str = ""  # empty when it completed with correct results
    timed_out: bool = False  # the failure is a time-out (a hung or unreachable member)

    @property
    def ok(self) -> bool:
        """Completed with no data errors."""
        return not self.error

    @property
    def busbw_gbps(self) -> float:
        """Bus bandwidth at the largest size (where the link, not latency, is the limit); the
        median when that size was measured more than once (`repeats`)."""
        return judged_busbw(self.sizes)


def judged_busbw(sizes: Sequence[fleet_pb2.BurnInSize]) -> float:
    """The median busbw of the largest size's measurements (0 when nothing was measured)."""
    if not sizes:
        return 0.0
    largest = max(s.bytes for s in sizes)
    return statistics.median(s.busbw_gbps for s in sizes if s.bytes == largest)


def answer_from(node: str, ok: bool, message: str,
                result: fleet_pb2.DirectiveResult | None) -> MemberAnswer:
    """A member's answer from a directive outcome (ok flag, message, DirectiveResult)."""
    if result is None or result.WhichOneof("payload") != "burnin":
        return MemberAnswer(node, None, message or "the agent answered without a burn-in result")
    burnin = result.burnin
    wrong = sum(s.wrong for s in burnin.sizes)
    if burnin.timed_out:
        error = f"{TIMED_OUT}: {burnin.error or 'workers killed at the deadline'}"
    elif burnin.error:
        error = burnin.error
    elif wrong:
        error = f"{wrong} wrong all-reduce results: data corrupted on the way"
    elif not burnin.sizes:
        error = "the burn-in measured nothing"
    elif not ok:
        error = message or "the agent reported failure"
    else:
        error = ""
    return MemberAnswer(node, burnin, error)


def no_answer(node: str, waited_s: float) -> MemberAnswer:
    """A member that did not answer in time."""
    return MemberAnswer(node, None, f"{TIMED_OUT}: no answer within {waited_s:g} s")


def measure_group(group: Group, answers: Mapping[str, MemberAnswer]) -> GroupMeasure:
    """Combine the members' answers into the group's measurement."""
    ordered = [answers.get(n) or MemberAnswer(n, None, f"{TIMED_OUT}: no answer")
               for n in group.nodes]
    results = [a.result for a in ordered if a.result is not None]
    first = results[0] if results else None
    duration = max((r.duration_s for r in results), default=0.0)
    failed = [a for a in ordered if a.error]
    error = ""
    timed_out = False
    if failed:
        telling = [a for a in failed if not a.error.startswith(TIMED_OUT)] or failed
        culprit = telling[0]
        timed_out = culprit.error.startswith(TIMED_OUT)
        error = culprit.error if not group.multi_node else f"{culprit.node}: {culprit.error}"
    master = answers.get(group.master)
    source = master.result if master is not None and master.result is not None else first
    return GroupMeasure(
        sizes=tuple(source.sizes) if source is not None and not error else (),
        backend=source.backend if source is not None else "",
        nccl_version=source.nccl_version if source is not None else "",
        world_size=group.world_size, duration_s=duration, error=error, timed_out=timed_out,
    )


def _one(values: Sequence[str]) -> str:
    """One value, or the sorted distinct values joined when members differ."""
    return ",".join(sorted(set(values)))


def cohort_key(group: Group, measure: GroupMeasure, nodes: Mapping[str, Candidate]) -> CohortKey:
    """The cohort a group's result is comparable within."""
    members = [nodes[n] for n in group.nodes if n in nodes]
    stack = " ".join(p for p in (measure.backend, measure.nccl_version) if p)
    return CohortKey(sku=_one([m.sku for m in members]), driver=_one([m.driver for m in members]),
                     nccl=stack, world_size=group.world_size)


def cohort_label(key: CohortKey) -> str:
    """A cohort as one string, "sku/driver/nccl/world_size" (stored with each verdict; the
    metrics' `cohort` label)."""
    return f"{key.sku}/{key.driver}/{key.nccl}/{key.world_size}"


def _targets_for(backend: str, targets: Mapping[str, BurnInTarget]) -> Mapping[str, BurnInTarget]:
    return targets if backend.startswith("nccl") else {"default": targets["default"]}


def judge_groups(
    groups: Sequence[Group], measures: Mapping[str, GroupMeasure],
    nodes: Mapping[str, Candidate], targets: Mapping[str, BurnInTarget] = DEFAULT_TARGETS,
    baseline: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, BurnInJudgement]:
    """Judge each group (by label) within its cohort; NCCL results also against the floor.

    Single nodes and multi-node groups are judged apart even when their cohort keys match.
    `baseline` (busbw values by `cohort_label`) joins the cohorts of single-node groups.
    """
    batches: dict[tuple[bool, bool], list[Measured]] = {}
    for g in groups:
        m = measures[g.label]
        measured = Measured(g.label, cohort_key(g, m, nodes), m.busbw_gbps, m.ok, m.error)
        batches.setdefault((m.backend.startswith("nccl"), g.multi_node), []).append(measured)
    out: dict[str, BurnInJudgement] = {}
    for (is_nccl, multi), batch in batches.items():
        table = _targets_for("nccl" if is_nccl else "", targets)
        known = {} if multi or not baseline else {
            m.key: baseline[cohort_label(m.key)] for m in batch
            if cohort_label(m.key) in baseline}
        out.update({j.node: j for j in judge(batch, table, known)})
    return out


def sizes_json(sizes: Sequence[fleet_pb2.BurnInSize]) -> list[dict[str, Any]]:
    """Per-size rows as stored in evidence and printed by the CLI."""
    return [{"bytes": s.bytes, "time_us": s.time_us, "algbw_gbps": s.algbw_gbps,
             "busbw_gbps": s.busbw_gbps, "wrong": s.wrong} for s in sizes]


def evidence_detail(
    judgement: BurnInJudgement, group: Group, measure: GroupMeasure, burnin_id: str,
) -> dict[str, Any]:
    """The "burnin" evidence stored for each member of a judged group.

    `error` is set only when the group did not pass: the gate shows it as the reason.
    """
    message = judgement.message
    if group.multi_node:
        message = f"in group {group.label} ({', '.join(group.nodes)}): {message}"
    detail: dict[str, Any] = {
        "burnin_id": burnin_id, "judged": True, "check": judgement.check,
        "passed": judgement.passed, "message": message, "group": group.label,
        "members": list(group.nodes), "world_size": group.world_size,
        "backend": measure.backend, "nccl_version": measure.nccl_version,
        "busbw_gbps": judgement.busbw_gbps, "cohort_median_gbps": judgement.cohort_median_gbps,
        "threshold_gbps": judgement.threshold_gbps, "duration_s": measure.duration_s,
        "timed_out": measure.timed_out,
        "wrong": sum(s.wrong for s in measure.sizes), "sizes": sizes_json(measure.sizes),
    }
    if not judgement.passed:
        detail["error"] = f"{judgement.check}: {message}"
    return detail


def result_message(
    judgement: BurnInJudgement, group: Group, measure: GroupMeasure, evidence_id: str,
) -> fleet_pb2.BurninNodeResult:
    """A judged group as the wire's BurninNodeResult."""
    return fleet_pb2.BurninNodeResult(
        node=group.label, members=group.nodes, passed=judgement.passed,
        severity=_SEVERITY.get(judgement.severity, fleet_pb2.SEVERITY_UNKNOWN),
        check=judgement.check, message=judgement.message, busbw_gbps=judgement.busbw_gbps,
        cohort_median_gbps=judgement.cohort_median_gbps or 0.0,
        threshold_gbps=judgement.threshold_gbps or 0.0, sizes=measure.sizes,
        evidence_id=evidence_id, backend=measure.backend, duration_s=measure.duration_s,
    )


def result_from_evidence(evidence_id: int, verdict: str,
                         detail: Mapping[str, Any]) -> fleet_pb2.BurninNodeResult:
    """Stored judged "burnin" evidence back as a BurninNodeResult (e.g. for `node show`)."""
    sizes = [fleet_pb2.BurnInSize(**{k: row[k] for k in ("bytes", "time_us", "algbw_gbps",
                                                           "busbw_gbps", "wrong") if k in row})
             for row in detail.get("sizes", []) if isinstance(row, dict)]
    return fleet_pb2.BurninNodeResult(
        node=str(detail.get("group", "")), members=[str(m) for m in detail.get("members", [])],
        passed=bool(detail.get("passed", verdict == "ok")),
        severity=_SEVERITY.get(verdict, fleet_pb2.SEVERITY_UNKNOWN),
        check=str(detail.get("check", "burnin")), message=str(detail.get("message", "")),
        busbw_gbps=float(detail.get("busbw_gbps") or 0.0),
        cohort_median_gbps=float(detail.get("cohort_median_gbps") or 0.0),
        threshold_gbps=float(detail.get("threshold_gbps") or 0.0), sizes=sizes,
        evidence_id=str(evidence_id), backend=str(detail.get("backend", "")),
        duration_s=float(detail.get("duration_s") or 0.0))


def skipped_message(node: str, reason: str) -> fleet_pb2.BurninNodeResult:
    """A requested node that was not burned in."""
    return fleet_pb2.BurninNodeResult(
        node=node, members=[node], passed=False, severity=fleet_pb2.SEVERITY_UNKNOWN,
        check="burnin_skipped", message=reason)
