"""What the supervisor does to a run: launch an attempt, restart it on a new placement, finish
it. Each action moves the run's state by the pure table, moves its nodes' lifecycle, and writes
the run's timeline; deciding WHEN is the supervisor loop's job (and `decide`'s)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from controller.fleet.lifecycle import IllegalTransition, NodeEvent
from controller.server.service import FleetService, UnknownNode
from controller.supervisor.agent_backend import RankBackend
from controller.supervisor.checkpoints import latest_complete_step
from controller.supervisor.decide import (
    Failure,
    FailureKind,
    Restart,
    RunEvent,
    RunState,
    run_transition,
)
from controller.supervisor.keeper import RunKeeper
from controller.supervisor.ledger import Incident
from controller.supervisor.placement import replace_node
from controller.supervisor.record import RunRecord


class RunActions:
    """The supervisor's hands: every change it makes to a run goes through here."""

    def __init__(self, service: FleetService, backend: RankBackend, keeper: RunKeeper,
                 poke: Callable[[RunRecord], None], agent_restart_wait_s: float = 15.0) -> None:
        self.service = service
        self.backend = backend
        self.keeper = keeper
        self.poke = poke  # wake the run's loop
        self.agent_restart_wait_s = agent_restart_wait_s

    def _now(self) -> float:
        return self.service.clock.time()

    async def launch(self, record: RunRecord) -> None:
        """Start the next attempt on the current placement. The attempt (its number, placement
        and state) is saved before any rank starts: a controller lost from here on finds a
        STARTING attempt to re-attach to, never ranks it does not know of."""
        spec = record.spec
        record.attempt += 1
        record.attempt_started_at = self._now()
        record.failures.clear()
        record.exited_ok.clear()
        record.last_step_at.clear()
        if record.state is RunState.PENDING:
            record.state = run_transition(record.state, RunEvent.LAUNCHED)
        await self.keeper.save(record)
        refused = await self.backend.launch(record)
        now = self._now()
        where = (f", rendezvous {record.master_addr}:{record.master_port}"
                 if record.master_port else "")
        record.log(now, "launched", f"attempt {record.attempt}: {spec.world_size} ranks on "
                   f"{len(record.nodes)} nodes{where}")
        for name, why in refused.items():
            record.failures.append(Failure(FailureKind.NODE_UNREACHABLE, name, now,
                                           f"could not start ranks: {why}"))
        self.poke(record)

    async def stop_ranks(self, record: RunRecord) -> int:
        """Stop every rank of the current attempt; how many nodes confirmed."""
        return await self.backend.stop(record)

    async def node_event(self, node: str, event: NodeEvent, cause: str) -> None:
        """Move a node's lifecycle (a move its state does not allow is not an error here)."""
        with contextlib.suppress(IllegalTransition, UnknownNode):
            await self.service.apply_event(node, event, cause=cause, actor="controller:supervisor")

    async def restart(self, record: RunRecord, d: Restart) -> None:
        """Record the failure (root cause, incident), save, then relaunch."""
        now = self._now()
        root = d.root_cause
        record.state = run_transition(record.state, RunEvent.FAILURE)
        record.reason = f"{root.kind.value} on {root.node}: {root.detail}"
        if record.incidents and record.incidents[-1].resumed_at is None:
            last = record.incidents[-1]  # the previous restart never reached a step: it ends here
            record.incidents[-1] = Incident(last.fault_at, last.detected_at,
                                            max(last.detected_at, root.at))
        record.incidents.append(Incident(root.at, now, None))
        record.log(now, "failure", f"root cause: {record.reason}"
                   + (f" (evidence {root.evidence_id})" if root.evidence_id else "")
                   + f"; detected {now - root.at:.2f} s after the fault", root.node)
        await self.keeper.save(record)  # a controller restart from here redoes the restart
        await self.relaunch(record, d)

    async def relaunch(self, record: RunRecord, d: Restart) -> None:
        """Stop every rank, take the implicated nodes out, swap in the spares, launch again."""
        now = self._now()
        record.log(now, "stop", f"stopping every rank on {len(record.nodes)} node(s)")
        stopped = await self.stop_ranks(record)
        record.log(self._now(), "stopped",
                   f"{stopped} of {len(record.nodes)} node(s) confirmed their ranks stopped "
                   f"{self._now() - now:.2f} s after detection")
        for failure in d.take_out:
            if failure.kind is FailureKind.RANK_HANG:
                await self.node_event(failure.node, NodeEvent.REPORT_CRITICAL,
                                      f"run {record.name}: {failure.detail}")
        placement = record.placement
        for failed, spare in d.replace.items():
            placement = replace_node(placement, failed, spare)
            await self.node_event(spare, NodeEvent.ALLOCATED,
                                  f"spare for {failed} in run {record.name}")
            record.log(self._now(), "replace",
                       f"{failed} replaced by spare {spare} from NVLink domain "
                       f"{record.domain_of.get(spare, '?')}", failed)
        record.placement = placement
        record.restarts += 1
        resume = latest_complete_step(record.spec.checkpoint_dir)
        record.log(self._now(), "restart",
                   f"attempt {record.attempt + 1} ({record.restarts}/"
                   f"{record.spec.restart_budget} restarts) resumes from "
                   + (f"checkpoint step {resume}" if resume is not None else "the start"))
        await self._await_restarted_agents(record)
        record.state = run_transition(record.state, RunEvent.RELAUNCHED)
        await self.launch(record)

    async def _await_restarted_agents(self, record: RunRecord) -> None:
        """A node of the placement whose agent said it was shutting down (a restart, an
        upgrade) gets a moment to come back on a new stream before the relaunch, rather than
        being refused and swapped for a spare; after `agent_restart_wait_s` it is launched on
        (or refused) as it is."""
        old = {n: s for n, s in record.agents_restarting.items() if n in record.nodes}
        record.agents_restarting.clear()
        if not old:
            return
        started = self._now()

        def back(node: str) -> bool:
            stream = self.service.streams.get(node)
            return stream is not None and stream.id != old[node]

        while not all(back(n) for n in old) and self._now() - started < self.agent_restart_wait_s:
            await asyncio.sleep(0.1)
        record.log(self._now(), "agents", f"waited {self._now() - started:.1f} s for the restarted "
                   f"agent(s) of {', '.join(sorted(old))}: "
                   + ("back" if all(back(n) for n in old) else "not all back"))

    async def finish(self, record: RunRecord, event: RunEvent, reason: str,
                     failed: bool = False) -> None:
        """End the run (completed, stopped, or failed: ranks stopped) and release its nodes.
        The intent is saved first: a controller lost midway finishes it on its next start."""
        record.ending = (event.value, reason, failed)
        await self.keeper.save(record)
        now = self._now()
        if failed and record.state not in (RunState.RESTARTING, RunState.PENDING):
            record.state = run_transition(record.state, RunEvent.FAILURE)
        if failed or event is RunEvent.OPERATOR_STOP:
            await self.stop_ranks(record)
        record.state = run_transition(record.state, RunEvent.GAVE_UP if failed else event)
        record.reason = reason
        record.ended_at = now
        record.log(now, record.state.value, reason)
        for node in record.nodes:
            await self.node_event(node, NodeEvent.RELEASED, f"run {record.name} {record.state}")
        record.ending = None
        await self.keeper.save(record)
        self.poke(record)
