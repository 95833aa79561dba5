"""Every metric family the agent's exporter can emit, by the name PromQL uses."""

from __future__ import annotations

from agent.exporter.dcgm import DCGM_SPECS
from agent.exporter.families import Spec
from agent.exporter.gpu_metrics import GPU_SPECS
from agent.exporter.host_metrics import HOST_SPECS
from agent.exporter.node import NODE_SPECS

ALL_SPECS: tuple[Spec, ...] = (*DCGM_SPECS, *NODE_SPECS, *GPU_SPECS, *HOST_SPECS)
METRIC_NAMES: tuple[str, ...] = tuple(spec.name for spec in ALL_SPECS)

if len(set(METRIC_NAMES)) != len(METRIC_NAMES):  # pragma: no cover - a definition error
    raise RuntimeError("duplicate metric family names")
