"""Gate + placement for the DeepSeek-V3 671B spec (8,192 GB300 GPUs, 64-GPU expert groups of 16
trays, 2 spares per NVL72 domain) on a fleet of 136 domains of 18 trays (2,448 trays), every tray
with fresh health and burn-in evidence; one tray in each of 8 domains carries a critical
finding, so the gate rejects 8 trays and placement must use the 128 intact domains.

    .venv/bin/python bench/placement.py [--rounds 5]

Prints the per-call time of gating every tray and of placing the run (pure functions).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller.fleet.gate import gate  # noqa: E402
from controller.fleet.lifecycle import NodeState  # noqa: E402
from controller.fleet.model import (  # noqa: E402
    Evidence,
    EvidenceKind,
    GateFinding,
    GatePolicy,
    NodeFacts,
    Severity,
)
from controller.supervisor.placement import Candidate, Layout, Placement, place  # noqa: E402
from controller.supervisor.spec import load_run_spec  # noqa: E402

DOMAINS, TRAYS, DEGRADED = 136, 18, 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    spec = load_run_spec(REPO / "examples" / "deepseek_v3_671b.toml")
    now = 1_800_000_000.0
    policy = GatePolicy().with_burnin()
    names = [f"gb300-d{d:03d}-t{t:02d}" for d in range(DOMAINS) for t in range(TRAYS)]
    facts = {n: NodeFacts(n, NodeState.READY) for n in names}
    bad = GateFinding("ecc_volatile_dbe", Severity.CRITICAL, 2, "1 uncorrectable ECC error")
    broken = {f"gb300-d{d:03d}-t05" for d in range(0, DOMAINS, DOMAINS // DEGRADED)}
    evidence = {
        n: [Evidence(f"h-{n}", EvidenceKind.HEALTH,
                     Severity.CRITICAL if n in broken else Severity.OK,
                     (bad,) if n in broken else (), now - 30),
            Evidence(f"b-{n}", EvidenceKind.BURNIN, Severity.OK, (), now - 3600)]
        for n in names
    }
    layout = Layout(spec.world_size, spec.ranks_per_node, spec.ep_size, spec.spares_per_domain)
    gate_s, place_s = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        admitted = [n for n in names
                    if gate(facts[n], evidence[n], policy, now, run=spec.name).admitted]
        t1 = time.perf_counter()
        placed = place([Candidate(n, n.rsplit("-", 1)[0], 4) for n in admitted], layout)
        t2 = time.perf_counter()
        gate_s.append(t1 - t0)
        place_s.append(t2 - t1)
    assert isinstance(placed, Placement), placed
    print(f"gate   {len(names)} trays: {1e3 * statistics.median(gate_s):7.1f} ms "
          f"({1e6 * statistics.median(gate_s) / len(names):.1f} µs per tray), "
          f"{len(admitted)} admitted")
    print(f"place  {len(placed.nodes)} trays / {spec.world_size} ranks: "
          f"{1e3 * statistics.median(place_s):7.1f} ms, "
          f"{sum(len(s) for s in placed.spares.values())} spares held in "
          f"{len(placed.spares)} domains")


if __name__ == "__main__":
    main()
