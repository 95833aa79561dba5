"""The Prometheus collector: renders the latest published `NodeReport` at scrape time.

A scrape never touches NVML or sysfs: the sweep loop publishes each judged sweep, and
`collect()` renders whatever was published last (an immutable snapshot, so a scrape racing a
publish sees either the old or the new report, never a mix). When sweeps stop, the last report
keeps being served; `gpufleet_last_sweep_timestamp_seconds` shows its age.

    xids = XidCounter()
    exporter = NodeCollector(registry, xids=xids)
    # every sweep:
    xids.observe(sample.xid_events)
    exporter.publish(report, sweep_duration_s=elapsed)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata

from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agent.exporter.dcgm import XidDescriber, dcgm_families
from agent.exporter.gpu_metrics import gpu_families
from agent.exporter.host_metrics import host_families
from agent.exporter.names import ALL_SPECS
from agent.exporter.node import agent_info, node_families, xid_family
from agent.exporter.xid import XidCounter, XidSnapshot
from agent.model import NodeReport


@dataclass(frozen=True, slots=True)
class Published:
    """What the last sweep handed to the exporter."""

    report: NodeReport
    sweep_duration_s: float | None


def agent_version() -> str:
    """The installed gpufleet version ("unknown" when run from an uninstalled tree)."""
    try:
        return metadata.version("gpufleet")
    except metadata.PackageNotFoundError:
        return "unknown"


def render(
    published: Published | None,
    xids: XidSnapshot,
    version: str,
    info_labels: Mapping[str, str] | None = None,
    describe_xid: XidDescriber | None = None,
) -> list[Metric]:
    """Every family for one scrape; pure (the same inputs give the same exposition)."""
    report = published.report if published is not None else None
    out = [agent_info(version, report, info_labels or {}), xid_family(xids)]
    if published is None or report is None:
        return out
    sample = report.sample
    out += node_families(report, published.sweep_duration_s)
    out += dcgm_families(sample, xids, describe_xid)
    out += gpu_families(sample)
    if sample.host is not None:
        out += host_families(sample.host)
    return out


class NodeCollector(Collector):
    """Serves the latest report. Registers itself into `registry` when one is given."""

    def __init__(
        self,
        registry: CollectorRegistry | None,
        *,
        xids: XidCounter,
        version: str | None = None,
        info_labels: Mapping[str, str] | None = None,
        describe_xid: XidDescriber | None = None,
    ) -> None:
        self._xids = xids
        self._version = version if version is not None else agent_version()
        self._info_labels = dict(info_labels or {})
        self._describe_xid = describe_xid
        self._published: Published | None = None
        if registry is not None:
            registry.register(self)

    def publish(self, report: NodeReport, *, sweep_duration_s: float | None = None) -> None:
        """Make `report` what the next scrape shows (one atomic reference swap)."""
        self._published = Published(report, sweep_duration_s)

    def collect(self) -> Iterable[Metric]:
        return render(
            self._published,
            self._xids.snapshot(),
            self._version,
            self._info_labels,
            self._describe_xid,
        )

    def describe(self) -> Iterable[Metric]:
        """Every family name this collector may emit (lets a registry refuse duplicates)."""
        return [spec.empty() for spec in ALL_SPECS]
