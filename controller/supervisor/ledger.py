"""Goodput and energy ledger of a run, a pure function of its timeline.

Time (after Meta's effective-training-time model): every second of the run's wall time is
productive (a step execution whose result survived), recomputed (a step executed again after
a restart rolled back to the last complete checkpoint), detection (fault → the supervisor
noticed), restart (noticed → first resumed step: stop, relaunch, checkpoint load) or other
(start-up before the first step, checkpoint writes, waiting). A step's *last* execution is the
productive one; every earlier execution of the same step number was lost work.

Energy: the NVML total-energy counters (mJ since driver load) of the run's GPUs, read while
their node belonged to the run, binned in time by `energy.EnergyAccount` (each GPU's growth
spread evenly between its readings; a spare joins late, a lost GPU or a failed node drops out).
Energy inside productive step intervals is productive; the rest of the run's energy was lost.
Joules per step and per training token are computed over productive steps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.supervisor.energy import EnergyAccount


@dataclass(frozen=True)
class StepRecord:
    attempt: int
    step: int
    end_at: float
    step_time_s: float


@dataclass(frozen=True)
class Incident:
    fault_at: float
    detected_at: float
    resumed_at: float | None  # start of the next attempt's first step; None: never resumed


@dataclass(frozen=True)
class Ledger:
    wall_s: float
    productive_s: float
    recomputed_s: float
    detection_s: float
    restart_s: float
    other_s: float
    productive_steps: int
    recomputed_steps: int
    restarts: int
    energy_j: float | None = None
    productive_energy_j: float | None = None
    joules_per_step: float | None = None
    joules_per_token: float | None = None

    @property
    def goodput(self) -> float:
        """Productive share of wall time."""
        return self.productive_s / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, float | int | None]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__},
                "goodput": self.goodput}


def build_ledger(
    started_at: float,
    ended_at: float,
    steps: Sequence[StepRecord],
    incidents: Sequence[Incident],
    energy: EnergyAccount | None = None,
    tokens_per_step: int = 0,
) -> Ledger:
    """Account the run's wall time and energy."""
    last_exec: dict[int, StepRecord] = {}
    for rec in sorted(steps, key=lambda r: r.end_at):
        last_exec[rec.step] = rec
    productive = [r for r in last_exec.values()]
    lost = [r for r in steps if last_exec[r.step] is not r]
    productive_s = sum(r.step_time_s for r in productive)
    recomputed_s = sum(r.step_time_s for r in lost)
    detection_s = sum(max(0.0, i.detected_at - i.fault_at) for i in incidents)
    restart_s = sum(max(0.0, (i.resumed_at if i.resumed_at is not None else ended_at)
                        - i.detected_at) for i in incidents)
    wall = max(0.0, ended_at - started_at)
    other = max(0.0, wall - productive_s - recomputed_s - detection_s - restart_s)
    ledger = Ledger(wall, productive_s, recomputed_s, detection_s, restart_s, other,
                    len(productive), len(lost), len(incidents))
    if energy is None or not energy.bins:
        return ledger
    useful = sum(energy.between(r.end_at - r.step_time_s, r.end_at) for r in productive)
    per_step = useful / len(productive) if productive else None
    per_token = per_step / tokens_per_step if per_step is not None and tokens_per_step else None
    return Ledger(**{**{k: getattr(ledger, k) for k in ledger.__dataclass_fields__},
                     "energy_j": energy.total_j, "productive_energy_j": useful,
                     "joules_per_step": per_step, "joules_per_token": per_token})
