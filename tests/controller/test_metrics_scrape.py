"""ScrapeTime: families refreshed from their source on every collect, never seen half-done."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Gauge

from controller.metrics_scrape import ScrapeTime


class Source:
    """A fake state the refresh reads: node -> value, or an error to raise."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.error: Exception | None = None
        self.refreshes = 0


def family_with(source: Source, pause_s: float = 0.0) -> tuple[CollectorRegistry, Gauge]:
    gauge = Gauge("x_value", "A value per node.", ["node"], registry=None)

    def refresh() -> None:
        source.refreshes += 1
        if source.error is not None:
            raise source.error
        gauge.clear()
        for node, v in source.values.items():
            time.sleep(pause_s)
            gauge.labels(node).set(v)

    collector = ScrapeTime(gauge)
    collector.refresh = refresh
    registry = CollectorRegistry()
    registry.register(collector)
    return registry, gauge


def test_every_collect_reads_the_source_first() -> None:
    source = Source()
    registry, _ = family_with(source)
    source.values = {"n1": 1.0}
    assert registry.get_sample_value("x_value", {"node": "n1"}) == 1.0

    source.values = {"n2": 2.0}

    assert registry.get_sample_value("x_value", {"node": "n1"}) is None
    assert registry.get_sample_value("x_value", {"node": "n2"}) == 2.0
    assert source.refreshes == 3


def test_a_failing_refresh_serves_the_previous_values(caplog: pytest.LogCaptureFixture) -> None:
    source = Source()
    registry, _ = family_with(source)
    source.values = {"n1": 1.0}
    registry.get_sample_value("x_value", {"node": "n1"})
    source.error = RuntimeError("dictionary changed size during iteration")

    with caplog.at_level(logging.ERROR, logger="controller.metrics_scrape"):
        assert registry.get_sample_value("x_value", {"node": "n1"}) == 1.0
    assert "refreshing x_value failed" in caplog.text


def test_the_registry_knows_the_families_names() -> None:
    registry, _ = family_with(Source())

    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Gauge("x_value", "the same name again", registry=registry)


def test_concurrent_scrapes_never_see_a_half_refreshed_family() -> None:
    source = Source()
    registry, _ = family_with(source, pause_s=0.001)
    source.values = {f"n{i}": float(i) for i in range(20)}
    seen: list[int] = []

    def scrape() -> None:
        for _ in range(5):
            family = next(f for f in registry.collect() if f.name == "x_value")
            seen.append(len(family.samples))

    threads = [threading.Thread(target=scrape) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)

    assert seen == [20] * 15
