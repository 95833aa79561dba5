"""Metric family specs and a builder that skips missing values and duplicate label sets.

A spec names a family as it is queried (counters end in `_total`), so the tuple of every spec's
name is exactly what dashboards and alert rules may use (`METRIC_NAMES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    UnknownMetricFamily,
)

Value = float | int | bool | None


class Kind(StrEnum):
    """Prometheus type of a family."""

    GAUGE = "gauge"
    COUNTER = "counter"  # ours: the name ends in _total
    UNTYPED = "untyped"  # dcgm-exporter counters: their names cannot carry _total


@dataclass(frozen=True, slots=True)
class Spec:
    """One metric family: its queried name, type, help text and label names."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.kind is Kind.COUNTER) != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")

    def empty(self) -> Metric:
        """A family with no samples (for `describe`)."""
        return Family(self).metric


class Family:
    """Collects the samples of one family. A value of None is not emitted (never invented);
    a label set seen before is dropped, so a scrape can never hold duplicate series."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        labels = list(spec.labels)
        self.metric: Metric
        if spec.kind is Kind.GAUGE:
            self.metric = GaugeMetricFamily(spec.name, spec.help, labels=labels)
        elif spec.kind is Kind.COUNTER:
            self.metric = CounterMetricFamily(spec.name, spec.help, labels=labels)
        else:
            self.metric = UnknownMetricFamily(spec.name, spec.help, labels=labels)
        self._seen: set[tuple[str, ...]] = set()

    def add(self, label_values: Sequence[str], value: Value) -> None:
        """Add one sample unless its value is None or its label set is already present."""
        if value is None:
            return
        key = tuple(label_values)
        if key in self._seen:
            return
        self._seen.add(key)
        metric = self.metric
        if isinstance(metric, (GaugeMetricFamily, CounterMetricFamily, UnknownMetricFamily)):
            metric.add_metric(list(key), float(value))

    def __len__(self) -> int:
        return len(self._seen)


def label(value: object) -> str:
    """A label value: None becomes "" (Prometheus treats an empty label as absent)."""
    return "" if value is None else str(value)
