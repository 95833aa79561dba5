"""Burn-in metrics: each node's latest judged burn-in, fed by the orchestrator (against the
orchestrator tests' FakeFleet on a real store) and read back from stored evidence when the
controller starts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from controller.burnin.orchestrator import run_burnin
from controller.burnin.params import params_from_request
from controller.extensions import build_extensions
from controller.metrics import ControllerMetrics
from controller.metrics_burnin import GB, BurninSample, LatestBurnins, sample_from
from controller.server import Controller
from controller.server.preflight import PreflightSettings
from controller.store import FleetStore
from gpufleet_common.clock import SystemClock
from tests.controller.conftest import settings
from tests.controller.test_burnin_orchestrator import (
    DEFAULTS,
    FIVE,
    FakeFleet,
    collect,
    healthy,
    hung,
    register,
    request,
)

pytestmark = pytest.mark.timeout(60)
COHORT = "gb300/570.1/gloo/2"


def detail(check: str = "burnin", busbw: float = 4.0, **kw: Any) -> dict[str, Any]:
    return {"judged": True, "check": check, "busbw_gbps": busbw, "cohort": COHORT} | kw


def test_a_judged_detail_becomes_a_sample() -> None:
    assert sample_from("n1", detail(), 5.0) == BurninSample("n1", COHORT, 5.0, 4.0 * GB, False)
    assert sample_from("n1", detail("burnin_outlier", 1.0), 5.0) == BurninSample(
        "n1", COHORT, 5.0, 1.0 * GB, True)
    assert sample_from("n1", detail("burnin_below_floor", 90.0), 5.0) == BurninSample(
        "n1", COHORT, 5.0, 90.0 * GB, True)
    assert sample_from("n1", detail("burnin_failed", 0.0), 5.0) == BurninSample(
        "n1", COHORT, 5.0, None, False)  # measured nothing


def test_unjudged_or_cohortless_evidence_is_not_exported() -> None:
    assert sample_from("n1", {"error": ""}, 5.0) is None  # the agent's own result
    assert sample_from("n1", detail(judged=False), 5.0) is None
    assert sample_from("n1", {k: v for k, v in detail().items() if k != "cohort"}, 5.0) is None


def test_the_newest_result_per_node_wins_whatever_the_order() -> None:
    latest = LatestBurnins()
    new = BurninSample("n1", COHORT, 20.0, 4.0 * GB, False)
    old = BurninSample("n1", "other/1/gloo/2", 10.0, 1.0 * GB, True)
    latest.record([new])
    latest.record([old])

    assert latest.snapshot() == {"n1": new}


def test_the_families_show_the_latest_per_node() -> None:
    latest = {"n1": BurninSample("n1", COHORT, 20.0, 4.0 * GB, False),
              "n2": BurninSample("n2", COHORT, 21.0, 1.0 * GB, True),
              "n3": BurninSample("n3", COHORT, 22.0, None, False)}
    metrics = ControllerMetrics()
    metrics.bind_burnins(lambda: latest)
    get = metrics.registry.get_sample_value
    busbw, outlier = "gpufleet_burnin_busbw_bytes_per_second", "gpufleet_burnin_outlier"

    assert get(busbw, {"node": "n1", "cohort": COHORT}) == 4e9
    assert get(outlier, {"node": "n1", "cohort": COHORT}) == 0
    assert get(outlier, {"node": "n2", "cohort": COHORT}) == 1
    assert get(busbw, {"node": "n3", "cohort": COHORT}) is None
    assert get(outlier, {"node": "n3", "cohort": COHORT}) is None
    assert get("gpufleet_burnin_timestamp_seconds", {"node": "n3"}) == 22.0

    latest["n1"] = BurninSample("n1", "gb300/575.0/gloo/2", 30.0, 4.5 * GB, False)

    assert get(busbw, {"node": "n1", "cohort": COHORT}) is None  # moved cohort: one series
    assert get(busbw, {"node": "n1", "cohort": "gb300/575.0/gloo/2"}) == 4.5e9


async def test_the_orchestrator_feeds_the_metrics_and_stores_the_cohort(
    store: FleetStore,
) -> None:
    for name in FIVE:
        register(store, name, "d0")
    speeds = {"n1": 4.0, "n2": 4.2, "n3": 3.9, "n4": 4.1, "n5": 1.0}
    scripts = {n: healthy(v) for n, v in speeds.items()}
    fleet = FakeFleet(store, scripts)
    latest = LatestBurnins()
    metrics = ControllerMetrics()
    metrics.bind_burnins(latest.snapshot)
    params = params_from_request(request(nodes=list(FIVE)), DEFAULTS)
    await collect(run_burnin(fleet, params, on_judged=latest.record_evidence))
    get = metrics.registry.get_sample_value

    assert get("gpufleet_burnin_outlier", {"node": "n5", "cohort": COHORT}) == 1
    assert get("gpufleet_burnin_outlier", {"node": "n1", "cohort": COHORT}) == 0
    assert get("gpufleet_burnin_busbw_bytes_per_second", {"node": "n2", "cohort": COHORT}) == (
        pytest.approx(4.2e9))
    stamp = get("gpufleet_burnin_timestamp_seconds", {"node": "n5"})
    assert stamp is not None and abs(SystemClock().time() - stamp) < 5
    evidence = store.latest_evidence("n5", "burnin")
    assert evidence is not None and evidence.detail["cohort"] == COHORT

    reloaded = LatestBurnins()  # what a restarted controller reads back

    assert await reloaded.load(fleet.read) == 5
    assert reloaded.snapshot() == latest.snapshot()


async def test_a_burn_in_that_did_not_complete_has_only_a_timestamp(store: FleetStore) -> None:
    register(store, "n1", "d0")
    fleet = FakeFleet(store, {"n1": hung})
    latest = LatestBurnins()
    params = params_from_request(request(nodes=["n1"]), DEFAULTS)
    await collect(run_burnin(fleet, params, on_judged=latest.record_evidence))

    (sample,) = latest.snapshot().values()
    assert sample.busbw_bytes_per_second is None and not sample.outlier


async def test_the_controller_exports_stored_burn_ins_from_its_start(db_path: Path) -> None:
    s = FleetStore.open(db_path)
    try:
        register(s, "n1", "d0")
        s.add_evidence("n1", "burnin", "critical", detail("burnin_outlier", 1.0), 1234.0, "x")
    finally:
        s.close()
    controller = Controller(settings(db_path), extend=build_extensions(PreflightSettings()))
    await controller.start()
    try:
        get = controller.metrics.registry.get_sample_value
        for _ in range(200):
            if get("gpufleet_burnin_timestamp_seconds", {"node": "n1"}) is not None:
                break
            await asyncio.sleep(0.01)

        assert get("gpufleet_burnin_timestamp_seconds", {"node": "n1"}) == 1234.0
        assert get("gpufleet_burnin_outlier", {"node": "n1", "cohort": COHORT}) == 1
    finally:
        await controller.stop(grace_s=0)
