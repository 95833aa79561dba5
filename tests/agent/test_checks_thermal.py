"""Thermal, clock-event, violation-time and power checks (table-driven)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.checks import thermal
from agent.checks.readings import CheckFn
from agent.model import Action, NodeSample, ReadStatus, Severity
from agent.policy import default_policy, policy_from_dict
from tests.agent.samples import FindingKey, healthy_node, keys, later, with_gpu, with_unavailable

CRIT, WARN, UNKNOWN = Severity.CRITICAL, Severity.WARN, Severity.UNKNOWN
H100 = healthy_node()  # slowdown 90 °C
Case = tuple[CheckFn, Callable[[NodeSample], NodeSample], set[FindingKey]]

CASES: dict[str, Case] = {
    "cool": (thermal.check_temperature, lambda s: with_gpu(s, 0, temperature_c=84.9), set()),
    "within margin": (
        thermal.check_temperature,
        lambda s: with_gpu(s, 0, temperature_c=85.0),
        {("temperature_near_slowdown", WARN, 0, Action.NONE)},
    ),
    "at slowdown": (
        thermal.check_temperature,
        lambda s: with_gpu(s, 0, temperature_c=90.0),
        {("temperature_slowdown", CRIT, 0, Action.DRAIN)},
    ),
    "slowdown threshold not supported": (
        thermal.check_temperature,
        lambda s: with_unavailable(
            with_gpu(s, 0, temperature_c=99.0),
            0,
            "slowdown_temp_c",
            status=ReadStatus.NOT_SUPPORTED,
        ),
        set(),
    ),
    "temperature read error": (
        thermal.check_temperature,
        lambda s: with_unavailable(s, 2, "temperature_c"),
        {("temperature", UNKNOWN, 2, Action.NONE)},
    ),
    "idle and power cap are fine": (
        thermal.check_clock_events,
        lambda s: with_gpu(s, 1, clock_event_reasons=0x1 | 0x4),
        set(),
    ),
    "hw slowdown": (
        thermal.check_clock_events,
        lambda s: with_gpu(s, 1, clock_event_reasons=0x8),
        {("clock_events", WARN, 1, Action.NONE)},
    ),
    "hw thermal + power brake": (
        thermal.check_clock_events,
        lambda s: with_gpu(s, 1, clock_event_reasons=0x40 | 0x80),
        {("clock_events", WARN, 1, Action.NONE)},
    ),
    "power reads zero": (
        thermal.check_power,
        lambda s: with_gpu(s, 6, power_w=0.0),
        {("power_unreadable", WARN, 6, Action.NONE)},
    ),
    "power read error": (
        thermal.check_power,
        lambda s: with_unavailable(s, 6, "power_w"),
        {("power", UNKNOWN, 6, Action.NONE)},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_thermal_checks(case: Case) -> None:
    check, change, expected = case
    assert keys(check(change(H100), None, default_policy())) == expected


def test_clock_event_finding_names_active_reasons() -> None:
    sample = with_gpu(H100, 1, clock_event_reasons=0x40 | 0x80 | 0x1)
    [found] = thermal.check_clock_events(sample, None, default_policy())
    assert found.evidence["active"] == "hw_thermal,hw_power_brake"


def test_operator_adds_sw_thermal_to_clock_events() -> None:
    sample = with_gpu(H100, 1, clock_event_reasons=0x20)
    policy = policy_from_dict({"sku": {"h100_sxm": {"warn_clock_events": ["sw_thermal"]}}})
    assert thermal.check_clock_events(sample, None, default_policy()) == []
    assert len(thermal.check_clock_events(sample, None, policy)) == 1


def test_operator_margin_changes_the_result() -> None:
    sample = with_gpu(H100, 0, temperature_c=80.0)
    wide = policy_from_dict({"sku": {"h100_sxm": {"temp_margin_c": 12}}})
    assert thermal.check_temperature(sample, None, default_policy()) == []
    assert keys(thermal.check_temperature(sample, None, wide)) == {
        ("temperature_near_slowdown", WARN, 0, Action.NONE)
    }


def test_violation_growth_needs_a_previous_sample() -> None:
    grown = later(H100, 60.0, thermal_violation_ns=5_000_000)
    assert thermal.check_violations(grown, None, default_policy()) == []
    found = thermal.check_violations(grown, H100, default_policy())
    assert keys(found) == {("thermal_violation", WARN, g, Action.NONE) for g in range(8)}
    assert found[0].evidence["violation_ms"] == 5.0
    assert found[0].evidence["window_s"] == 60.0


def test_violation_fraction_threshold_from_policy() -> None:
    grown = later(H100, 10.0, power_violation_ns=1_000_000_000)  # 1 s of 10 s = 10 %
    lenient = policy_from_dict({"sku": {"h100_sxm": {"power_violation_warn_fraction": 0.2}}})
    assert len(thermal.check_violations(grown, H100, default_policy())) == 8
    assert thermal.check_violations(grown, H100, lenient) == []


def test_violation_counter_reset_is_not_growth() -> None:
    before = later(H100, 0.0, thermal_violation_ns=9_000_000)
    after = later(before, 30.0, thermal_violation_ns=10)  # driver reloaded: counter restarted
    assert thermal.check_violations(after, before, default_policy()) == []
