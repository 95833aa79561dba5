"""What keeping a run across controller restarts costs, for the DeepSeek-V3 671B spec (8,192
ranks on 2,048 GB300 trays, 8,192 GPU energy series): one snapshot save (serialize + SQLite
write) of a run 10,000 steps in, one tick's step append, and the load a restarted controller
does. The snapshot saves run on the supervisor's event loop every 5 s and on every state change.

    .venv/bin/python bench/run_persist.py [--rounds 5] [--steps 10000] [--samples 600]

`--samples`: energy counter readings per GPU so far, 10 s apart (the account keeps one number per
time bucket, and the snapshot at most 4,096 buckets).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller.store import FleetStore  # noqa: E402
from controller.supervisor.decide import RunState  # noqa: E402
from controller.supervisor.ledger import StepRecord  # noqa: E402
from controller.supervisor.persist import record_from_json, record_to_json  # noqa: E402
from controller.supervisor.placement import Candidate, Layout, Placement, place  # noqa: E402
from controller.supervisor.record import RunRecord  # noqa: E402
from controller.supervisor.spec import load_run_spec  # noqa: E402

DOMAINS, TRAYS = 136, 18


def build(steps: int, samples: int) -> RunRecord:
    spec = load_run_spec(REPO / "examples" / "deepseek_v3_671b.toml")
    candidates = [Candidate(f"gb300-d{d:03d}-t{t:02d}", f"dom{d:03d}", 4,
                            {g: f"mlx5_{g}" for g in range(4)})
                  for d in range(DOMAINS) for t in range(TRAYS)]
    placed = place(candidates, Layout(spec.world_size, spec.ranks_per_node, spec.ep_size,
                                      spec.spares_per_domain))
    assert isinstance(placed, Placement)
    record = RunRecord(spec, placed, {c.name: c.domain for c in candidates}, 0.0)
    record.state, record.attempt = RunState.RUNNING, 1
    record.steps = [StepRecord(1, s, 10.0 + s * 12.0, 11.5) for s in range(1, steps + 1)]
    for i in range(samples):  # every GPU read every 10 s at 1 kW
        for node in placed.nodes:
            for gpu in range(4):
                record.add_energy(f"{node.node}/gpu{gpu}", 10.0 * i, 1e7 * i)
    for i in range(2000):
        record.log(float(i), "step", f"attempt 1: step {i}")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=600)
    args = parser.parse_args()
    record = build(args.steps, args.samples)
    rows = [(s.attempt, s.step, s.end_at, s.step_time_s) for s in record.steps]
    with tempfile.TemporaryDirectory() as tmp:
        store = FleetStore.open(Path(tmp) / "fleet.db")
        store.save_run(record.name, "running", 0.0, 0.0, record_to_json(record), rows,
                       fresh=True)
        save_s, append_s, load_s, size = [], [], [], 0
        for i in range(args.rounds):
            t0 = time.perf_counter()
            text = record_to_json(record)
            store.save_run(record.name, "running", 0.0, float(i), text)
            save_s.append(time.perf_counter() - t0)
            size = len(text)
            t0 = time.perf_counter()
            store.append_run_steps(record.name, [(1, args.steps + i + 1, 1e9 + i, 11.5)])
            append_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            (stored,) = store.stored_runs()
            back = record_from_json(stored.record, [StepRecord(*s) for s in stored.steps])
            load_s.append(time.perf_counter() - t0)
            assert back.nodes == record.nodes
        store.close()
    series = len(record.energy.last)
    print(f"671B run: {len(record.nodes)} nodes, {series} GPU energy series x {args.samples} "
          f"readings ({len(record.energy.bins)} time buckets), {args.steps} steps, "
          f"{len(record.events)} timeline events")
    print(f"snapshot: {size / 1e6:.2f} MB; save (serialize + write) median "
          f"{statistics.median(save_s) * 1000:.1f} ms")
    print(f"step append (one tick): median {statistics.median(append_s) * 1e6:.0f} us")
    print(f"load on restart (read + rebuild, {args.steps} steps): median "
          f"{statistics.median(load_s) * 1000:.1f} ms")
    print(f"event-loop share of the 5 s save period: "
          f"{statistics.median(save_s) / 5.0 * 100:.2f} %")


if __name__ == "__main__":
    main()
