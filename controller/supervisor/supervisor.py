"""The run supervisor: a thin loop around the pure decisions (placement, decide, ledger).

It admits nodes with the preflight gate, places the run, starts the ranks through the agents
(StartRanks directives), and watches three sources: what the agents report (rank exits, rank
progress, fatal XIDs and critical reports, energy counters), lifecycle transitions of the run's
nodes (drained, unreachable), and time (hangs). On every change it asks `decide()` and applies
the answer: stop every rank, take the bad node out, bring in a spare from the same NVLink domain
that passes the gate on fresh evidence, and relaunch from the latest complete checkpoint — or
give up within the restart budget. One asyncio task per run; nothing here judges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass

from controller.fleet.lifecycle import NodeEvent, NodeState
from controller.server.preflight import PreflightSettings
from controller.server.service import Delivered, FleetService
from controller.store import TransitionRow
from controller.supervisor.actions import RunActions
from controller.supervisor.admission import Admission, candidate
from controller.supervisor.agent_backend import AgentBackend, RankBackend
from controller.supervisor.decide import (
    TERMINAL,
    Complete,
    Continue,
    Failure,
    FailureKind,
    GiveUp,
    Restart,
    RunEvent,
    RunState,
    RunView,
    decide,
    find_hangs,
)
from controller.supervisor.keeper import RunKeeper
from controller.supervisor.observe import (
    AGENT_STOPPED,
    BAD_STATES,
    current,
    node_failure,
    note_energy,
    note_progress,
    note_rank_exit,
    prepare_reattach,
)
from controller.supervisor.placement import Layout, Unsatisfiable, place
from controller.supervisor.record import RunRecord
from controller.supervisor.spec import RunSpec

log = logging.getLogger(__name__)


class RunRejected(Exception):
    """A run that cannot start; `reasons` say why, in operator words."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = tuple(reasons)


@dataclass(frozen=True)
class SupervisorSettings:
    tick_s: float = 0.25
    directive_timeout_s: float = 30.0
    rendezvous_host: str | None = None  # None: the first node's hostname
    workdir: str = ""
    port_range: tuple[int, int] = (20000, 30000)
    persist_interval_s: float = 5.0  # a running run's snapshot is saved at least this often


class Supervisor:
    """Owns every run of this controller."""

    def __init__(self, service: FleetService, preflight: PreflightSettings,
                 settings: SupervisorSettings = SupervisorSettings(),
                 backend: RankBackend | None = None) -> None:
        self.service = service
        self.preflight = preflight
        self.settings = settings
        self.backend: RankBackend = backend or AgentBackend(
            service, rendezvous_host=settings.rendezvous_host, workdir=settings.workdir,
            directive_timeout_s=settings.directive_timeout_s, port_range=settings.port_range)
        self.runs: dict[str, RunRecord] = {}
        self.keeper = RunKeeper(service.write, service.read, service.clock.time)
        self.admission = Admission(service, preflight)
        self.actions = RunActions(service, self.backend, self.keeper, self._poke)
        # after a (re)start, agents need a moment to reconnect: no decision counts a node
        # that has not come back yet as gone, until its heartbeat timeout says so
        self._reconnect_until = service.clock.time() + service.settings.heartbeat_timeout_s
        self._wake: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # one actor per run: its loop or the operator
        service.add_listener(self._on_delivered)
        service.add_transition_listener(self._on_transition)

    # ------------------------------------------------------------------ operator API

    async def start_run(self, spec: RunSpec) -> RunRecord:
        """Admit, place and launch; raises RunRejected with the reasons it cannot."""
        old = self.runs.get(spec.name)
        if old is not None and old.state not in TERMINAL:
            raise RunRejected([f"run {spec.name!r} is already {old.state.value}"])
        rows = await self.admission.rows()
        admitted = await self.admission.admit(None, spec.name)
        layout = Layout(spec.world_size, spec.ranks_per_node, spec.ep_size, spec.spares_per_domain)
        placed = place([candidate(rows[n]) for n in admitted if n in rows], layout)
        if isinstance(placed, Unsatisfiable):
            raise RunRejected([f"{len(admitted)} node(s) admitted by the gate", *placed.reasons])
        now = self.service.clock.time()
        record = RunRecord(spec, placed, {n: rows[n].nvlink_domain or n for n in rows}, now)
        record.log(now, "placed", f"{len(placed.nodes)} nodes in "
                   f"{len({n.domain for n in placed.nodes})} NVLink domain(s); spares "
                   + ", ".join(f"{d}: {len(s)}" for d, s in sorted(placed.spares.items())))
        self.runs[spec.name] = record
        await self.keeper.save(record, fresh=True)
        for node in placed.node_names:
            await self.actions.node_event(node, NodeEvent.ALLOCATED,
                                          f"allocated to run {spec.name}")
        try:
            await self.actions.launch(record)
        except Exception as exc:  # nothing left half-started: the run ends, its nodes go back
            log.exception("could not launch run %s", spec.name)
            await self.actions.finish(record, RunEvent.GAVE_UP, f"launch failed: {exc!r}",
                                      failed=True)
            raise RunRejected([f"launch failed: {exc}"]) from exc
        await self.keeper.save(record)
        self._watch(record)
        return record

    async def resume(self) -> int:
        """Load the stored runs (call before agents can connect); re-attach to every run that
        was live when the controller stopped. Returns how many were re-attached."""
        now = self.service.clock.time()
        live = 0
        for record in reversed(await self.keeper.load()):  # oldest first: newest wins a name
            self.runs[record.name] = record
            if record.state in TERMINAL:
                continue
            live += 1
            prepare_reattach(record, now, self.service.state_of)
            self._watch(record, resuming=True)
        return live

    def _watch(self, record: RunRecord, resuming: bool = False) -> None:
        self._wake[record.name] = asyncio.Event()
        self._locks[record.name] = asyncio.Lock()
        self._tasks[record.name] = asyncio.get_running_loop().create_task(
            self._monitor(record, resuming), name=f"run:{record.name}")

    async def stop_run(self, name: str) -> RunRecord:
        record = self.runs[name]
        async with self._locks.setdefault(name, asyncio.Lock()):  # never inside a restart
            if record.state not in TERMINAL:
                await self.actions.finish(record, RunEvent.OPERATOR_STOP,
                                          "stopped by the operator")
        return record

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ observations

    def _on_delivered(self, d: Delivered) -> None:
        now = self.service.clock.time()
        event = d.msg.event if d.msg.WhichOneof("body") == "event" else None
        kind = event.WhichOneof("kind") if event is not None else None
        if event is not None and kind == "rank_exit":
            record = self.runs.get(event.rank_exit.run_id)
            if record is not None and current(record, event.rank_exit.attempt):
                note_rank_exit(record, d.node, event.rank_exit)
                if event.rank_exit.reason == AGENT_STOPPED:
                    stream = self.service.streams.get(d.node)
                    record.agents_restarting[d.node] = stream.id if stream is not None else 0
                self._poke(record)
        elif event is not None and kind == "progress":
            record = self.runs.get(event.progress.run_id)
            if record is not None and current(record, event.progress.attempt):
                note_progress(record, event.progress, now)
        elif d.msg.WhichOneof("body") == "report":
            for record in self._active_on(d.node):
                note_energy(record, d.node, d.msg.report)
        failed = node_failure(d.msg, now)
        if failed is not None:
            self._node_failure(d.node, FailureKind.NODE_FATAL, *failed, d.evidence_id)

    def _on_transition(self, row: TransitionRow) -> None:
        kind = BAD_STATES.get(row.to_state)
        if kind is not None:
            self._node_failure(row.node, kind, row.at, f"node {row.to_state}: {row.cause}",
                               row.evidence_id)

    def _active_on(self, node: str) -> list[RunRecord]:
        return [r for r in self.runs.values()
                if r.state in (RunState.STARTING, RunState.RUNNING) and node in r.nodes]

    def _node_failure(self, node: str, kind: FailureKind, at: float, detail: str,
                      evidence_id: int | None) -> None:
        for record in self._active_on(node):
            record.failures.append(Failure(kind, node, at, detail,
                                           evidence_id=str(evidence_id or "")))
            self._poke(record)

    def _poke(self, record: RunRecord) -> None:
        wake = self._wake.get(record.name)
        if wake is not None:
            wake.set()

    # ------------------------------------------------------------------ the loop

    async def _monitor(self, record: RunRecord, resuming: bool = False) -> None:
        wake, lock = self._wake[record.name], self._locks[record.name]
        if resuming:
            async with lock:
                await self._guarded(record, self._resume_interrupted(record))
        while record.state not in TERMINAL:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.settings.tick_s)
            wake.clear()
            async with lock:
                if record.state not in (RunState.STARTING, RunState.RUNNING):
                    continue
                await self._guarded(record, self._step(record))
            if (record.unsaved_change() or self.service.clock.time() - record.saved_at
                    >= self.settings.persist_interval_s):
                await self.keeper.save(record)
            else:
                await self.keeper.save_steps(record)
        await self.keeper.save(record)  # the final state (and the last steps)

    async def _guarded(self, record: RunRecord, work: Awaitable[None]) -> None:
        """Run one piece of supervision; the watchdog never dies, and never leaves a run in
        limbo (a failed restart ends the run as failed)."""
        try:
            await work
        except Exception as exc:
            log.exception("supervisor step failed for %s", record.name)
            record.log(self.service.clock.time(), "error", f"supervisor error: {exc!r}")
            if record.state in (RunState.RESTARTING, RunState.PENDING):  # half-way: end it
                with contextlib.suppress(Exception):
                    await self.actions.finish(record, RunEvent.GAVE_UP,
                                              f"restart failed: {exc!r}", failed=True)

    def _not_back_yet(self, record: RunRecord, now: float) -> set[str]:
        """The run's nodes and spares that have not reconnected since this controller started,
        while their reconnect grace lasts (empty after it)."""
        if now >= self._reconnect_until:
            return set()
        names = set(record.nodes).union(*record.placement.spares.values())
        return {n for n in names if not self.service.connected(n)
                and self.service.state_of(n) not in (NodeState.DRAINED, NodeState.UNREACHABLE)}

    async def _resume_interrupted(self, record: RunRecord) -> None:
        """Finish what the previous controller left half-done: a run it was ending is ended
        (again: stopping ranks and releasing nodes are idempotent); one stored before its launch
        is launched; one stored mid-restart is stopped and relaunched from its failures."""
        if record.ending is not None or record.state in (RunState.PENDING, RunState.RESTARTING):
            while self._not_back_yet(record, self.service.clock.time()):
                await asyncio.sleep(self.settings.tick_s)
        if record.ending is not None:
            event, reason, failed = record.ending
            await self.actions.finish(record, RunEvent(event), reason, failed)
        elif record.state is RunState.PENDING:
            await self.actions.stop_ranks(record)
            await self.actions.launch(record)
        elif record.state is RunState.RESTARTING:
            await self.actions.stop_ranks(record)
            spares = await self.admission.usable_spares(record.placement)
            decision = decide(self._view(record, spares))
            if isinstance(decision, GiveUp):
                await self.actions.finish(record, RunEvent.FAILURE, decision.reason, failed=True)
            else:
                await self.actions.relaunch(record, decision if isinstance(decision, Restart)
                                            else Restart(Failure(FailureKind.RANK_EXIT, "", 0.0,
                                                                 "")))
        await self.keeper.save(record)

    async def _step(self, record: RunRecord) -> None:
        await self.backend.poll(record)
        now = self.service.clock.time()
        away = self._not_back_yet(record, now)
        if away:
            for rank, node in record.node_of_rank().items():  # it cannot report: not a hang
                if node in away and rank in record.last_step_at:
                    record.last_step_at[rank] = now
            if record.failures:
                return  # decide once the run's nodes and spares are back (or given up on)
        hung = {f.rank for f in record.failures if f.kind is FailureKind.RANK_HANG}
        hangs = (find_hangs(record.last_step_at, record.node_of_rank(),
                            record.attempt_started_at, now, record.spec.hang_timeout_s,
                            record.spec.startup_timeout_s)
                 if self.backend.sees_progress else [])
        for hang in hangs:
            if hang.rank not in hung:
                record.failures.append(hang)
        spares = (await self.admission.usable_spares(record.placement)
                  if record.failures else {})
        decision = decide(self._view(record, spares))
        if isinstance(decision, Continue):
            return
        if isinstance(decision, Complete):
            await self.actions.finish(record, RunEvent.ALL_EXITED_OK,
                               f"every rank exited 0 at step {record.step}")
        elif isinstance(decision, GiveUp):
            await self.actions.finish(record, RunEvent.FAILURE, decision.reason, failed=True)
        elif isinstance(decision, Restart):
            await self.actions.restart(record, decision)

    @staticmethod
    def _view(record: RunRecord, spares: Mapping[str, Sequence[str]]) -> RunView:
        return RunView(
            attempt=record.attempt, restarts_used=record.restarts,
            restart_budget=record.spec.restart_budget, world_size=record.spec.world_size,
            nodes=record.nodes, domain_of=record.domain_of, spares=spares,
            failures=tuple(record.failures), exited_ok=frozenset(record.exited_ok))

