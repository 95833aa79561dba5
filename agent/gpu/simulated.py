"""The simulated GPU backend: a deterministic, clock-driven node (and fleet) for the demo, the
controller's tests, the supervisor's end-to-end tests and the load benchmarks.

This module is the public face of the simulator; the parts live in `sim_*` modules:

- `sim_spec`: the `--simulate SPEC` grammar (`parse_sim_spec`, `SimSpec`, `SimSpecError`),
- `sim_faults` / `sim_fault_items`: fault kinds, `SimFault`, the fault item syntax,
- `sim_profiles`: the H100 SXM and GB300 SKU profiles,
- `sim_backend`: `SimulatedBackend` (a `GpuBackend`), `SimDevice`, `SimTopology`,
- `sim_fleet`: `SimFleet` and `build_simulated_backend`,
- `sim_gpu`, `sim_telemetry`, `sim_host`, `sim_inbox`, `sim_layout`: the model behind them.

Typical use::

    spec = parse_sim_spec("gb300:nodes=36,fault=xid79@gb300-d1-t04/gpu2+30s")
    fleet = SimFleet.from_spec(spec, clock)
    backend = fleet.backend("gb300-d1-t04")
    backend.set_load(0.9)
    samples = [d.sample() for d in backend.devices()]
"""

from __future__ import annotations

from agent.gpu.sim_backend import SimDevice, SimTopology, SimulatedBackend
from agent.gpu.sim_fault_items import FaultParseError, parse_fault_item
from agent.gpu.sim_faults import FaultKind, SimFault
from agent.gpu.sim_fleet import SimFleet, build_simulated_backend, fleet_nodes
from agent.gpu.sim_layout import SimNode
from agent.gpu.sim_spec import SimSpec, SimSpecError, parse_sim_spec

__all__ = [
    "FaultKind",
    "FaultParseError",
    "SimDevice",
    "SimFault",
    "SimFleet",
    "SimNode",
    "SimSpec",
    "SimSpecError",
    "SimTopology",
    "SimulatedBackend",
    "build_simulated_backend",
    "fleet_nodes",
    "parse_fault_item",
    "parse_sim_spec",
]
