"""Families whose values are read from the controller's state when Prometheus scrapes.

The values live in ordinary prometheus_client metric objects (so types, labels, histogram
buckets and counter semantics are the library's), created unregistered; a `ScrapeTime`
collector is what the registry holds. On every collect it first runs its `refresh` (read the
state, write the metric objects), then returns their samples, both under one lock: concurrent
scrapes never see a half-refreshed family. A refresh that fails is logged and the scrape
serves the values of the previous one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)


def _nothing() -> None:
    return None


class ScrapeTime:
    """A collector of `families`, brought up to date by `refresh` on every collect."""

    def __init__(self, *families: MetricWrapperBase) -> None:
        self.families = families
        self.refresh: Callable[[], None] = _nothing
        self._lock = threading.Lock()

    def describe(self) -> Iterable[Metric]:
        """The families' names and types (the registry checks them for duplicates)."""
        return [m for family in self.families for m in family.describe()]

    def collect(self) -> Iterable[Metric]:
        """Refresh, then every family's samples."""
        with self._lock:
            try:
                self.refresh()
            except Exception:
                names = ", ".join(m.name for m in self.describe())
                log.exception("refreshing %s failed; serving the previous values", names)
            return [m for family in self.families for m in family.collect()]
