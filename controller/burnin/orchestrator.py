"""Burn-in orchestration: plan, send RunBurnIn, await the answers, judge, store, stream.

The decisions live in pure modules — the plan in `groups`, the bookkeeping and judgement in
`outcome` and `judge` — and this loop only schedules and applies them:

1. Read the requested nodes; plan the single-node pass (`groups.single_node_plan`).
2. Send every group's directives, at most `max_parallel` groups at once (default: all), and
   await each member's answer for the burn-in's timeout plus a grace. A member that never
   answers, or whose workers hung and were killed, fails with "timed out".
3. Judge every group within its cohort and store each member's judged verdict as "burnin"
   evidence (busbw per size, cohort median, threshold, message), newer than the agent's own
   unjudged result, so preflight `--burnin` rejects outliers and failures with that reason.
   With `baseline_age_s` (preflight's own re-test of stale nodes), the single nodes' cohort
   also holds the other nodes' recent passing verdicts (`baseline`).
4. With `multi_node`, plan NVLink-domain groups of the nodes that passed and repeat 2-3; a
   member's group verdict supersedes its single-node one.
5. With `cross_domain` (which implies 4), pair the nodes that passed both passes across NVLink
   domains (`groups.cross_domain_plan`), each rank on its own NIC rail (the directive's `rails`
   option), and repeat 2-3; a member of a failed domain group is not paired (the fault is not
   located yet). Pairs are judged among themselves; a pair's verdict supersedes the earlier ones.
6. Stream progress while it runs, then one BurninReport.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from controller.burnin.baseline import read_baseline
from controller.burnin.groups import (
    Candidate,
    Group,
    Member,
    Plan,
    cross_domain_plan,
    domain_plan,
    single_node_plan,
)
from controller.burnin.judge import DEFAULT_TARGETS, BurnInJudgement, BurnInTarget
from controller.burnin.outcome import (
    GroupMeasure,
    MemberAnswer,
    answer_from,
    cohort_key,
    cohort_label,
    evidence_detail,
    judge_groups,
    measure_group,
    no_answer,
    result_message,
    skipped_message,
)
from controller.burnin.params import BurninParams
from controller.fleet.lifecycle import NodeState
from controller.server.directives import DirectiveOutcome, NotConnected
from controller.server.streams import DirectiveBacklog
from controller.store import FleetStore, NodeRow
from controller.store.codec import rails_by_gpu
from gpufleet_common.clock import Clock
from protos.gpufleet.v1 import fleet_pb2

T = TypeVar("T")
EVIDENCE_KIND = "burnin"
RAILS_OPTION = "rails"  # worker option: "<device>/<port>" per local rank, comma-separated
#: Told the (node, verdict, detail) records just stored as judged evidence, and when.
JudgedSink = Callable[[Sequence[tuple[str, str, dict[str, Any]]], float], None]


class BurninHost(Protocol):
    """What the orchestrator needs from the controller (FleetService, through an adapter)."""

    @property
    def clock(self) -> Clock: ...

    def send_directive(self, node: str, directive: fleet_pb2.Directive) -> str: ...

    async def wait_directive(self, directive_id: str, timeout_s: float) -> DirectiveOutcome: ...

    async def read(self, fn: Callable[[FleetStore], T]) -> T: ...

    async def write(self, fn: Callable[[FleetStore], T]) -> T: ...

    def connected(self, node: str) -> bool: ...


# ---------------------------------------------------------------- pure helpers


def candidates_from(rows: Mapping[str, NodeRow], names: Iterable[str],
                    connected: Callable[[str], bool]) -> list[Candidate]:
    """The requested nodes as the planner sees them (unknown names included, unregistered)."""
    out: list[Candidate] = []
    for name in names:
        row = rows.get(name)
        if row is None:
            out.append(Candidate(name, registered=False, connected=False))
            continue
        out.append(Candidate(
            name=name, sku=row.sku, nvlink_domain=row.nvlink_domain, gpus=len(row.gpus),
            driver=row.driver_version, hostname=row.hostname, state=row.state,
            connected=connected(name), rails=rails_by_gpu(row.rails)))
    return out


def directive_for(group: Group, member: Member, params: BurninParams,
                  burnin_id: str) -> fleet_pb2.Directive:
    """The RunBurnIn telling `member` its share of `group` (with the member's rails, if
    planned, as the `rails` option; an operator's own `rails` option for the node wins)."""
    options = {RAILS_OPTION: ",".join(member.rails)} if member.rails else {}
    options.update(params.options_for(member.node))
    return fleet_pb2.Directive(run_burnin=fleet_pb2.RunBurnIn(
        burnin_id=burnin_id, sizes_bytes=params.sizes, warmup_iters=params.warmup_iters,
        iters=params.iters, world_size=group.world_size, rank_offset=member.rank_offset,
        local_ranks=member.local_ranks, master_addr=group.master_addr,
        master_port=group.master_port, timeout_s=params.timeout_s,
        options=options))


def progress(total: int, done: int, phase: str, node: str = "") -> fleet_pb2.BurninUpdate:
    """A progress update: `total - done` burn-ins of `phase` are still running or queued."""
    return fleet_pb2.BurninUpdate(progress=fleet_pb2.PreflightProgress(
        total=total, done=done, retesting=total - done, phase=phase, node=node))


def evidence_records(
    groups: Sequence[Group], judged: Mapping[str, BurnInJudgement],
    measures: Mapping[str, GroupMeasure], burnin_id: str,
    nodes: Mapping[str, Candidate] | None = None,
    baseline: Mapping[str, Sequence[float]] | None = None,
) -> list[tuple[str, str, dict[str, Any]]]:
    """(node, verdict, detail) of the evidence to store: one per member of each group; with
    `nodes`, each detail also names the group's cohort (and, with `baseline`, how many stored
    verdicts joined it)."""
    out = []
    for g in groups:
        detail = evidence_detail(judged[g.label], g, measures[g.label], burnin_id)
        if nodes is not None:
            detail["cohort"] = cohort_label(cohort_key(g, measures[g.label], nodes))
            if baseline is not None and not g.multi_node:
                detail["baseline_verdicts"] = len(baseline.get(detail["cohort"], ()))
        out += [(node, judged[g.label].severity, dict(detail)) for node in g.nodes]
    return out


def store_judged(store: FleetStore, records: Sequence[tuple[str, str, dict[str, Any]]],
                 at: float, source: str) -> dict[str, int]:
    """Store judged burn-in evidence (and a fleet event per node) in one transaction."""
    ids: dict[str, int] = {}
    with store.transaction():
        for node, verdict, detail in records:
            evidence_id = store.add_evidence(node, EVIDENCE_KIND, verdict, detail, at, source)
            ids[node] = evidence_id
            busbw = float(detail.get("busbw_gbps") or 0.0)
            store.add_event(
                node, EVIDENCE_KIND,
                f"burn-in {detail['group']}: {verdict}, {busbw:.3g} GB/s busbw: "
                f"{detail['message']}"[:500],
                at, {"evidence_id": str(evidence_id), "check": str(detail["check"]),
                     "busbw_gbps": f"{busbw:.6g}", "burnin_id": str(detail["burnin_id"])})
    return ids


# ---------------------------------------------------------------- the loop


async def _answer(host: BurninHost, node: str, directive_id: str, wait_s: float) -> MemberAnswer:
    try:
        outcome = await host.wait_directive(directive_id, wait_s)
    except TimeoutError:
        return no_answer(node, wait_s)
    return answer_from(node, outcome.ok, outcome.message, outcome.result)


async def _run_group(host: BurninHost, group: Group, params: BurninParams, burnin_id: str,
                     slots: asyncio.Semaphore) -> tuple[Group, GroupMeasure]:
    """Send the group's directives (all members or none) and await every member's answer."""
    async with slots:
        answers: dict[str, MemberAnswer] = {}
        absent = [n for n in group.nodes if not host.connected(n)]
        if absent:  # a partial group would only hang in its rendezvous
            answers = {n: MemberAnswer(n, None, f"could not start: {', '.join(absent)} "
                                                "not connected") for n in group.nodes}
            return group, measure_group(group, answers)
        sent: dict[str, str] = {}
        for member in group.members:
            try:
                sent[member.node] = host.send_directive(
                    member.node, directive_for(group, member, params, burnin_id))
            except (NotConnected, DirectiveBacklog) as err:
                answers[member.node] = MemberAnswer(member.node, None, f"could not start: {err}")
        wait_s = params.timeout_s + params.answer_grace_s
        got = await asyncio.gather(*(_answer(host, n, d, wait_s) for n, d in sent.items()))
        answers.update({a.node: a for a in got})
    return group, measure_group(group, answers)


async def _run_pass(
    host: BurninHost, groups: Sequence[Group], params: BurninParams, burnin_id: str,
    phase: str, out: dict[str, GroupMeasure],
) -> AsyncIterator[fleet_pb2.BurninUpdate]:
    """Run `groups` (bounded by max_parallel), filling `out` by label; yield progress."""
    total = len(groups)
    yield progress(total, 0, phase)
    slots = asyncio.Semaphore(params.max_parallel)
    tasks = [asyncio.create_task(_run_group(host, g, params, f"{burnin_id}-{phase}-{i}", slots))
             for i, g in enumerate(groups)]
    try:
        for done, next_done in enumerate(asyncio.as_completed(tasks), start=1):
            group, measure = await next_done
            out[group.label] = measure
            yield progress(total, done, phase, group.label)
    finally:
        for task in tasks:
            task.cancel()


async def _judge_and_store(
    host: BurninHost, plan: Plan, measures: Mapping[str, GroupMeasure],
    nodes: Mapping[str, Candidate], targets: Mapping[str, BurnInTarget], burnin_id: str,
    on_judged: JudgedSink | None = None, baseline: Mapping[str, Sequence[float]] | None = None,
) -> tuple[dict[str, BurnInJudgement], dict[str, int]]:
    judged = judge_groups(plan.groups, measures, nodes, targets, baseline)
    records = evidence_records(plan.groups, judged, measures, burnin_id, nodes, baseline)
    at = host.clock.time()
    ids = await host.write(lambda store: store_judged(store, records, at, f"burnin:{burnin_id}"))
    if on_judged is not None:
        on_judged(records, at)
    return judged, ids


async def _group_pass(
    host: BurninHost, plan: Plan, params: BurninParams, burnin_id: str, phase: str,
    nodes: Mapping[str, Candidate], targets: Mapping[str, BurnInTarget],
    on_judged: JudgedSink | None, report: fleet_pb2.BurninReport,
    judged_out: dict[str, BurnInJudgement],
) -> AsyncIterator[fleet_pb2.BurninUpdate]:
    """Run a pass of multi-node groups, judge and store it, add it to `report.groups` and
    `judged_out` (by label); yield progress."""
    measures: dict[str, GroupMeasure] = {}
    async for update in _run_pass(host, plan.groups, params, burnin_id, phase, measures):
        yield update
    judged, ids = await _judge_and_store(host, plan, measures, nodes, targets, burnin_id,
                                         on_judged)
    judged_out.update(judged)
    report.groups.extend(
        result_message(judged[g.label], g, measures[g.label],
                       ",".join(str(ids[n]) for n in g.nodes))
        for g in plan.groups)


async def _baseline(host: BurninHost, plan: Plan, params: BurninParams,
                    nodes: Mapping[str, Candidate]) -> dict[str, list[float]] | None:
    """The stored verdicts joining the single nodes' cohorts (None without `baseline_age_s`)."""
    if params.baseline_age_s <= 0 or not plan.groups:
        return None
    since = host.clock.time() - params.baseline_age_s
    skus = {nodes[g.master].sku for g in plan.groups}
    return await host.read(lambda store: read_baseline(
        store, skus=skus, exclude=set(nodes), since=since, largest_bytes=max(params.sizes)))


def _requested(store: FleetStore, names: Sequence[str] | None) -> dict[str, NodeRow]:
    if names is None:
        return {r.name: r for r in store.nodes() if r.state != NodeState.RETIRED}
    return {n: row for n in names if (row := store.node(n)) is not None}


async def run_burnin(
    host: BurninHost, params: BurninParams, *,
    targets: Mapping[str, BurnInTarget] = DEFAULT_TARGETS, burnin_id: str = "",
    on_judged: JudgedSink | None = None,
) -> AsyncIterator[fleet_pb2.BurninUpdate]:
    """Burn in the requested nodes (with multi_node, their NVLink domains too; with
    cross_domain, then pairs across domains); yield progress, then the BurninReport.
    `on_judged` is told each pass's stored evidence."""
    burnin_id = burnin_id or f"b-{uuid.uuid4().hex[:12]}"
    names = None if params.all_nodes else list(params.nodes)
    rows = await host.read(lambda store: _requested(store, names))
    candidates = candidates_from(rows, sorted(rows) if names is None else names, host.connected)
    nodes = {c.name: c for c in candidates}
    single = single_node_plan(candidates, params.ranks_per_node)
    report = fleet_pb2.BurninReport()
    results = {s.node: skipped_message(s.node, s.reason) for s in single.skipped}
    baseline = await _baseline(host, single, params, nodes)

    measures: dict[str, GroupMeasure] = {}
    async for update in _run_pass(host, single.groups, params, burnin_id, "single-node",
                                  measures):
        yield update
    judged, ids = await _judge_and_store(host, single, measures, nodes, targets, burnin_id,
                                         on_judged, baseline)
    for g in single.groups:
        results[g.label] = result_message(judged[g.label], g, measures[g.label],
                                          str(ids[g.master]))
    report.nodes.extend(results[c.name] for c in candidates if c.name in results)

    if params.multi_node:
        survivors = [nodes[g.master] for g in single.groups if judged[g.label].passed]
        report.notes.extend(f"{g.master}: failed its single-node burn-in, so it is kept out of "
                            "multi-node groups" for g in single.groups
                            if not judged[g.label].passed)
        multi = domain_plan(survivors, params.ranks_per_node, params.port_base,
                            params.rendezvous_host)
        report.notes.extend(f"{s.node}: no multi-node group ({s.reason})" for s in multi.skipped)
        group_judged: dict[str, BurnInJudgement] = {}
        async for update in _group_pass(host, multi, params, burnin_id, "multi-node", nodes,
                                        targets, on_judged, report, group_judged):
            yield update
        if params.cross_domain:
            failed = [g for g in multi.groups if not group_judged[g.label].passed]
            report.notes.extend(f"{n}: its group {g.label} failed, so it is kept out of "
                                "cross-domain pairs" for g in failed for n in g.nodes)
            out = {n for g in failed for n in g.nodes}
            # after the domain groups' ports, so a port a slow rank still holds is not reused
            pairs = cross_domain_plan([c for c in survivors if c.name not in out],
                                      params.ranks_per_node,
                                      min(65535, params.port_base + len(multi.groups)),
                                      params.rendezvous_host)
            report.notes.extend(f"{s.node}: no cross-domain pair ({s.reason})"
                                for s in pairs.skipped)
            async for update in _group_pass(host, pairs, params, burnin_id, "cross-domain",
                                            nodes, targets, on_judged, report, {}):
                yield update
    yield fleet_pb2.BurninUpdate(result=report)
