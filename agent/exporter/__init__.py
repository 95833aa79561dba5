"""Prometheus exporter: the latest NodeReport as dcgm-exporter-compatible and gpufleet metrics."""

from agent.exporter.collector import NodeCollector, Published, agent_version, render
from agent.exporter.dcgm import DCGM_FIELDS, DCGM_LABELS
from agent.exporter.names import METRIC_NAMES
from agent.exporter.server import MetricsServer, serve_metrics
from agent.exporter.xid import XidCounter, XidSnapshot

__all__ = [
    "DCGM_FIELDS",
    "DCGM_LABELS",
    "METRIC_NAMES",
    "MetricsServer",
    "NodeCollector",
    "Published",
    "XidCounter",
    "XidSnapshot",
    "agent_version",
    "render",
    "serve_metrics",
]
