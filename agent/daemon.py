"""The node daemon: sweep on a cadence, publish metrics, stream to the controller, and carry
out its directives (check now, burn-in, start/stop ranks, drain). No vendor imports here: it
only schedules, calls and applies; judgement lives in agent.checks, I/O in the seams.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.burnin.runner import BurnInJob, run_burnin
from agent.checks.xid import rule_for
from agent.exporter.collector import NodeCollector
from agent.exporter.xid import XidCounter
from agent.link.client import ControllerLink
from agent.link.types import (
    CheckNow,
    Directive,
    DirectiveResult,
    RankExit,
    RunBurnIn,
    SetDrain,
    StartRanks,
    StopRanks,
)
from agent.model import NodeReport
from agent.ranks.progress import RankProgress
from agent.ranks.runner import RankRunner
from agent.sweep import Sweeper
from gpufleet_common.clock import Clock

log = logging.getLogger(__name__)


def free_port(host: str) -> int:
    """An ephemeral TCP port free on `host` right now (for a single-node rendezvous)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class DaemonState:
    """What the daemon knows beyond the latest report."""

    drained: bool = False
    drain_reason: str = ""
    sweeps: int = 0
    last_report: NodeReport | None = None
    sweep_errors: int = 0
    notes: list[str] = field(default_factory=list)


class AgentDaemon:
    """One node's agent loop. `link` and `ranks` are optional (standalone mode has neither)."""

    def __init__(
        self,
        sweeper: Sweeper,
        clock: Clock,
        interval_s: float,
        collector: NodeCollector,
        xids: XidCounter,
        link: ControllerLink | None = None,
        ranks: RankRunner | None = None,
        set_load: Callable[[float], None] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.sweeper = sweeper
        self.clock = clock
        self.interval_s = interval_s
        self.collector = collector
        self.xids = xids
        self.link = link
        self.ranks = ranks
        self.set_load = set_load
        self.workdir = workdir
        self.state = DaemonState()
        self._sweep_lock = threading.Lock()
        self._wake = threading.Event()

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        """Sweep every `interval_s` until `stop` is set; a failed sweep never ends the loop."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.sweep_and_publish()
            except Exception:  # pragma: no cover - defensive: the seams never raise
                self.state.sweep_errors += 1
                log.exception("sweep failed")
            remaining = self.interval_s - (time.monotonic() - started)
            if remaining > 0:
                stop.wait(remaining)

    def sweep_and_publish(self, window_s: float = 0.0, directive_id: str = "") -> NodeReport:
        """One judged sweep, shown on /metrics and sent to the controller (XIDs first)."""
        started = time.monotonic()
        with self._sweep_lock:
            report = self.sweeper.observe(window_s) if window_s > 0 else self.sweeper.sweep()
        duration = time.monotonic() - started
        self.state.sweeps += 1
        self.state.last_report = report
        self.xids.observe(report.sample.xid_events)
        self.collector.publish(report, sweep_duration_s=duration)
        self.forward(report, duration, window_s, directive_id)
        return report

    def forward(self, report: NodeReport, duration: float = 0.0, window_s: float = 0.0,
                directive_id: str = "") -> None:
        """Send a report's XIDs (each judged by the catalog) and then the report itself."""
        if self.link is None:
            return
        for event in report.sample.xid_events:
            rule = rule_for(event.xid, self.sweeper.policy)
            self.link.submit_xid(event, rule.severity, rule.action)
        self.link.submit_report(report, sweep_duration_s=duration, window_s=window_s,
                                directive_id=directive_id)

    # ------------------------------------------------------------ directives

    def handle(self, directive: Directive) -> DirectiveResult | None:
        """Carry out one directive (runs on the link's dispatcher threads)."""
        kind = directive.kind
        if isinstance(kind, CheckNow):
            self.sweep_and_publish(kind.window_s, directive.id)
            return None  # answered by the report carrying the directive id
        if isinstance(kind, RunBurnIn):
            return self._burnin(directive.id, kind)
        if isinstance(kind, StartRanks):
            return self._start_ranks(directive.id, kind)
        if isinstance(kind, StopRanks):
            stopped = self.ranks.stop(kind.run_id, kind.attempt, kind.grace_s) if self.ranks else 0
            self._load(0.0)
            return DirectiveResult(directive.id, True, f"stopped {stopped} rank(s)")
        if isinstance(kind, SetDrain):
            self.state.drained, self.state.drain_reason = kind.drained, kind.reason
            return DirectiveResult(directive.id, True, "drained" if kind.drained else "undrained")
        return DirectiveResult(directive.id, False, f"unsupported directive {type(kind).__name__}")

    def _burnin(self, directive_id: str, d: RunBurnIn) -> DirectiveResult:
        port = d.master_port
        if port == 0 and d.local_ranks == d.world_size:  # single-node: this agent picks the port
            port = free_port(d.master_addr or "127.0.0.1")
        job = BurnInJob(
            sizes=",".join(str(s) for s in d.sizes_bytes), warmup=d.warmup_iters, iters=d.iters,
            world_size=d.world_size, rank_offset=d.rank_offset, local_ranks=d.local_ranks,
            master_addr=d.master_addr or "127.0.0.1", master_port=port, timeout_s=d.timeout_s,
            backend=d.backend or "auto", options=dict(d.options),
        )
        self._load(1.0)
        try:
            result = run_burnin(job, cwd=self.workdir)
        finally:
            self._load(0.0)
        message = "burn-in complete" if result.ok else (result.error or "burn-in failed")
        return DirectiveResult(directive_id, result.ok, message, burnin=result,
                               burnin_id=d.burnin_id)

    def _start_ranks(self, directive_id: str, d: StartRanks) -> DirectiveResult:
        if self.ranks is None:
            return DirectiveResult(directive_id, False, "this agent does not run ranks")
        if self.state.drained:
            return DirectiveResult(directive_id, False,
                                   f"node is drained ({self.state.drain_reason}); refusing ranks")
        started = self.ranks.start(d)
        self._load(0.9)
        return DirectiveResult(directive_id, True, f"started {started} rank(s)")

    def _load(self, load: float) -> None:
        if self.set_load is not None:
            self.set_load(load)

    # ------------------------------------------------------------ rank callbacks

    def on_rank_exit(self, event: RankExit) -> None:
        if self.link is not None:
            self.link.submit_rank_exit(event)
        if self.ranks is not None and self.ranks.running() == 0:
            self._load(0.0)

    def on_progress(self, record: RankProgress) -> None:
        if self.link is not None:
            self.link.send_progress(record)
