"""A run record as JSON, and back: what the supervisor keeps in SQLite so a controller restart
re-attaches to its runs instead of forgetting them.

Pure functions. The snapshot holds everything but the step history (steps are appended to their
own table as they arrive, so a long run never rewrites them). The energy account is kept with
at most `SNAPSHOT_ENERGY_BINS` time buckets (total energy exact; a long run's pre-restart
productive/lost split at the coarser resolution). Transient per-attempt observations (last step
time per rank) are not kept: a re-attached run gets a fresh hang window.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from controller.supervisor.decide import Failure, FailureKind, RunState
from controller.supervisor.energy import EnergyAccount
from controller.supervisor.ledger import Incident, StepRecord
from controller.supervisor.placement import NodePlacement, Placement, RankSlot
from controller.supervisor.record import RunRecord, TimelineEvent
from controller.supervisor.spec import RunSpec

FORMAT = 1
SNAPSHOT_ENERGY_BINS = 4096


class CorruptRunRecord(ValueError):
    """A stored run record that cannot be read back (names the run and what is wrong)."""


def record_to_json(record: RunRecord) -> str:
    """The record's snapshot (without its step history)."""
    doc: dict[str, Any] = {
        "format": FORMAT,
        "spec": {**asdict(record.spec), "command": list(record.spec.command),
                 "env": dict(record.spec.env)},
        "placement": {"nodes": [[n.node, n.domain, n.ep_group,
                                 [[r.rank, r.local_rank, r.gpu, r.rail] for r in n.ranks]]
                                for n in record.placement.nodes],
                      "spares": {d: list(s) for d, s in record.placement.spares.items()}},
        "domain_of": {n: record.domain_of[n] for n in _relevant_nodes(record)
                      if n in record.domain_of},
        "created_at": record.created_at, "state": record.state.value,
        "attempt": record.attempt, "restarts": record.restarts, "reason": record.reason,
        "attempt_started_at": record.attempt_started_at, "ended_at": record.ended_at,
        "master_addr": record.master_addr, "master_port": record.master_port,
        "launch_ref": record.launch_ref,
        "ending": list(record.ending) if record.ending is not None else None,
        "step": record.step, "step_time_s": record.step_time_s,
        "loss": record.loss if math.isfinite(record.loss) else repr(record.loss),  # nan, inf
        "exited_ok": sorted(record.exited_ok),
        "failures": [{**asdict(f), "kind": f.kind.value} for f in record.failures],
        "incidents": [asdict(i) for i in record.incidents],
        "energy": record.energy.coarsened(SNAPSHOT_ENERGY_BINS).to_json(),
        "events": [asdict(e) for e in record.events],
    }
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def record_from_json(text: str, steps: Sequence[StepRecord] = (), name: str = "?") -> RunRecord:
    """Rebuild a record from its snapshot and its step history; CorruptRunRecord if unreadable."""
    try:
        doc = json.loads(text)
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown snapshot format {doc.get('format')!r}")
        spec_doc = dict(doc["spec"])
        spec = RunSpec(**{**spec_doc, "command": tuple(spec_doc["command"]),
                          "env": dict(spec_doc["env"])})
        record = RunRecord(spec, _placement(doc["placement"]), dict(doc["domain_of"]),
                           float(doc["created_at"]))
        record.state = RunState(doc["state"])
        record.attempt, record.restarts = int(doc["attempt"]), int(doc["restarts"])
        record.reason = str(doc["reason"])
        record.attempt_started_at = float(doc["attempt_started_at"])
        record.ended_at = float(doc["ended_at"])
        record.master_addr, record.master_port = str(doc["master_addr"]), int(doc["master_port"])
        record.launch_ref = str(doc.get("launch_ref", ""))
        ending = doc.get("ending")
        record.ending = (str(ending[0]), str(ending[1]), bool(ending[2])) if ending else None
        record.step, record.loss = int(doc["step"]), float(doc["loss"])  # float("nan") too
        record.step_time_s = float(doc["step_time_s"])
        record.exited_ok = {int(r) for r in doc["exited_ok"]}
        record.failures = [Failure(**{**f, "kind": FailureKind(f["kind"])})
                           for f in doc["failures"]]
        record.incidents = [Incident(**i) for i in doc["incidents"]]
        record.energy = EnergyAccount.from_json(doc["energy"])
        record.events = [TimelineEvent(**e) for e in doc["events"]]
        record.steps = list(steps)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CorruptRunRecord(f"stored run {name!r} cannot be read back: {exc!r}") from exc
    return record


def _relevant_nodes(record: RunRecord) -> set[str]:
    names = set(record.nodes)
    for spares in record.placement.spares.values():
        names.update(spares)
    names.update(f.node for f in record.failures)
    return names


def _placement(doc: Mapping[str, Any]) -> Placement:
    nodes = tuple(
        NodePlacement(str(node), str(domain), int(group),
                      tuple(RankSlot(int(r), int(lr), int(g), str(rail))
                            for r, lr, g, rail in ranks))
        for node, domain, group, ranks in doc["nodes"])
    return Placement(nodes, {str(d): tuple(s) for d, s in doc["spares"].items()})
