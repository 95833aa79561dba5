"""evaluate(): the whole registry on realistic samples and the central rule (its cost is measured in
bench/agent_sweep.py, not asserted here)."""

from __future__ import annotations

import json
import re

import pytest

from agent.checks import ALL_CHECKS, evaluate
from agent.checks.readings import CheckFn
from agent.model import Action, NodeReport, NodeSample, ReadStatus, Severity
from agent.policy import Policy, default_policy, policy_from_dict
from tests.agent.samples import (
    READING_FIELDS,
    healthy_node,
    keys,
    later,
    with_gpu,
    with_lost_gpu,
    with_unavailable,
    with_xids,
    without_readings,
    xid,
)

SKUS = ("h100_sxm", "gb300")
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


@pytest.mark.parametrize("sku", SKUS)
def test_healthy_node_has_no_findings_alone_or_over_a_window(sku: str) -> None:
    sample = healthy_node(sku)
    policy = policy_from_dict({"node": {"expected_gpus": len(sample.gpus)}})
    assert evaluate(sample, None, policy) == ()
    assert evaluate(later(sample, 60.0), sample, policy) == ()


@pytest.mark.parametrize("sku", SKUS)
def test_not_supported_everywhere_is_silent(sku: str) -> None:
    sample = without_readings(healthy_node(sku))
    assert evaluate(sample, None, default_policy()) == ()
    assert evaluate(later(sample, 60.0), sample, default_policy()) == ()


@pytest.mark.parametrize("field", [f for f in READING_FIELDS if f not in ("uuid", "name")])
def test_a_failed_read_of_any_judged_field_is_at_most_one_unknown(field: str) -> None:
    sample = with_unavailable(healthy_node(), 3, field)
    findings = evaluate(later(sample, 60.0), sample, default_policy())
    assert all(f.severity is Severity.UNKNOWN and f.gpu == 3 for f in findings)
    assert len(findings) <= 1
    assert all(field in f.message for f in findings)


def test_judged_fields_give_unknown_when_unreadable() -> None:
    judged = (
        "ecc_dbe_volatile",
        "remap_failure",
        "recovery_action",
        "temperature_c",
        "clock_event_reasons",
        "thermal_violation_ns",
        "power_w",
        "pcie_replay_count",
        "pcie_width_current",
        "nvlinks",
        "fabric",
        "persistence_mode",
    )
    for field in judged:
        sample = with_unavailable(healthy_node(), 3, field)
        assert [f.severity for f in evaluate(sample, None, default_policy())] == [
            Severity.UNKNOWN
        ], field


def test_dbe_on_gpu_3_is_critical_reset_gpu_3() -> None:
    findings = evaluate(with_gpu(healthy_node(), 3, ecc_dbe_volatile=1), None, default_policy())
    assert keys(findings) == {("ecc_volatile_dbe", Severity.CRITICAL, 3, Action.RESET_GPU)}
    report = NodeReport(healthy_node(), findings)
    assert report.verdict is Severity.CRITICAL and report.action is Action.RESET_GPU


def test_lost_gpu_is_reported_once_by_reachability_only() -> None:
    sample = with_lost_gpu(healthy_node(), 2)
    findings = evaluate(later(sample, 60.0), sample, default_policy())
    assert keys(findings) == {("gpu_lost", Severity.CRITICAL, 2, Action.REBOOT_NODE)}


def test_fault_mix_on_gb300_over_a_window() -> None:
    start = healthy_node("gb300")
    end = with_xids(later(start, 60.0), xid(94, gpu=1))
    end = with_gpu(end, 2, temperature_c=85.0)
    end = with_unavailable(end, 0, "power_w", detail="NVML_ERROR_TIMEOUT")
    assert keys(evaluate(end, start, default_policy())) == {
        ("xid", Severity.WARN, 1, Action.RESTART_APP),
        ("temperature_near_slowdown", Severity.WARN, 2, Action.NONE),
        ("power", Severity.UNKNOWN, 0, Action.NONE),
    }


def _explodes(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[object]:
    raise ZeroDivisionError("boom")


def test_a_crashing_check_becomes_unknown_and_the_rest_still_run() -> None:
    checks: tuple[tuple[str, CheckFn], ...] = (
        ("explodes", _explodes),  # type: ignore[arg-type]
        *ALL_CHECKS,
    )
    sample = with_gpu(healthy_node(), 0, ecc_dbe_volatile=1)
    findings = evaluate(sample, None, default_policy(), checks)
    assert keys(findings) == {
        ("explodes", Severity.UNKNOWN, None, Action.NONE),
        ("ecc_volatile_dbe", Severity.CRITICAL, 0, Action.RESET_GPU),
    }
    assert "ZeroDivisionError" in findings[0].message


def test_registry_names_are_unique_snake_case() -> None:
    names = [name for name, _ in ALL_CHECKS]
    assert len(names) == len(set(names))
    assert all(SNAKE.match(name) for name in names)


def test_findings_are_stable_ids_with_messages_and_json_evidence() -> None:
    start = healthy_node()
    end = later(
        start,
        60.0,
        ecc_dbe_volatile=1,
        remap_pending=True,
        temperature_c=95.0,
        clock_event_reasons=0x48,
        pcie_replay_count=10_000,
        persistence_mode=False,
        thermal_violation_ns=10**9,
    )
    end = with_xids(with_lost_gpu(end, 7), xid(79, gpu=7), xid(31, gpu=0))
    findings = evaluate(end, start, policy_from_dict({"node": {"expected_gpus": 9}}))
    assert len({f.check for f in findings}) >= 10
    for found in findings:
        assert SNAKE.match(found.check), found.check
        assert found.message[0].isupper(), found.message
        encoded = json.loads(json.dumps(found.to_json()))
        assert set(encoded) >= {"check", "severity", "gpu", "message", "action", "evidence"}
    assert all(f.gpu != 7 or f.check in ("gpu_lost", "xid") for f in findings)


def test_not_supported_on_one_gpu_changes_nothing_for_the_others() -> None:
    sample = with_unavailable(
        with_gpu(healthy_node(), 1, ecc_dbe_volatile=3),
        0,
        *READING_FIELDS,
        status=ReadStatus.NOT_SUPPORTED,
    )
    assert keys(evaluate(sample, None, default_policy())) == {
        ("ecc_volatile_dbe", Severity.CRITICAL, 1, Action.RESET_GPU)
    }
