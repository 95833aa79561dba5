"""What the supervisor knows about one run while it lives: the spec, the current placement and
attempt, what each rank last reported, the failures seen in this attempt, and the timeline the
goodput ledger is computed from. Mutated only by the supervisor's loop (one task per run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.supervisor.decide import Failure, RunState
from controller.supervisor.energy import EnergyAccount
from controller.supervisor.ledger import Incident, Ledger, StepRecord, build_ledger
from controller.supervisor.placement import Placement
from controller.supervisor.spec import RunSpec

MAX_EVENTS = 2000


@dataclass(frozen=True)
class TimelineEvent:
    at: float
    kind: str
    message: str
    node: str = ""
    attempt: int = 0


@dataclass
class RunRecord:
    """One run (the spec's instance)."""

    spec: RunSpec
    placement: Placement
    domain_of: dict[str, str]
    created_at: float
    state: RunState = RunState.PENDING
    attempt: int = 0
    restarts: int = 0
    reason: str = ""
    attempt_started_at: float = 0.0
    ended_at: float = 0.0
    master_addr: str = ""
    master_port: int = 0
    launch_ref: str = ""  # the launcher's handle of the current attempt (a Slurm job id)
    ending: tuple[str, str, bool] | None = None  # (event, reason, failed) while it is finishing
    step: int = 0
    loss: float = 0.0
    step_time_s: float = 0.0
    last_step_at: dict[int, float] = field(default_factory=dict)
    exited_ok: set[int] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    energy: EnergyAccount = field(default_factory=EnergyAccount)
    events: list[TimelineEvent] = field(default_factory=list)
    agents_restarting: dict[str, int] = field(default_factory=dict)  # node -> the stream id
    # its agent said "shutting down" on (0: none); a relaunch waits for a newer stream
    steps_saved: int = 0  # how many of `steps` are in the store already
    saved_at: float = 0.0  # when the snapshot was last written
    saved_mark: tuple[str, int] = ("", 0)  # (state, attempt) the last snapshot holds

    def unsaved_change(self) -> bool:
        """Whether the state or attempt moved since the last snapshot (e.g. the first step of
        an attempt, seen by a listener between two ticks of the loop)."""
        return (self.state.value, self.attempt) != self.saved_mark

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.placement.node_names

    def node_of_rank(self) -> dict[int, str]:
        return {slot.rank: n.node for n in self.placement.nodes for slot in n.ranks}

    def log(self, at: float, kind: str, message: str, node: str = "") -> TimelineEvent:
        """Append to the run's timeline (bounded: the oldest steps go first)."""
        event = TimelineEvent(at, kind, message, node, self.attempt)
        self.events.append(event)
        if len(self.events) > MAX_EVENTS:
            drop = next((i for i, e in enumerate(self.events) if e.kind == "step"), 0)
            del self.events[drop]
        return event

    def add_energy(self, source: str, at: float, total_mj: float) -> None:
        """One reading of a GPU's total-energy counter (mJ) while it served the run."""
        self.energy.add(source, at, total_mj)

    def ledger(self, now: float) -> Ledger:
        """The goodput and energy account so far (or of the whole run once it ended)."""
        end = self.ended_at or now
        return build_ledger(self.created_at, end, self.steps, self.incidents,
                            self.energy, self.spec.tokens_per_step)
