"""Inventory (GPU count, persistence, VBIOS) and reachability (lost GPU, NVML down)."""

from __future__ import annotations

import dataclasses

import pytest

from agent.checks import inventory, reachability
from agent.model import Action, NodeSample, ReadStatus, Severity, SystemInfo, Unavailable
from agent.policy import default_policy, policy_from_dict
from tests.agent.samples import healthy_node, keys, with_gpu, with_lost_gpu

CRIT, WARN, UNKNOWN = Severity.CRITICAL, Severity.WARN, Severity.UNKNOWN
H100 = healthy_node()
EXPECT_8 = policy_from_dict({"node": {"expected_gpus": 8}})


def _nvml_down(status: ReadStatus = ReadStatus.ERROR) -> NodeSample:
    system = SystemInfo(unavailable={"nvml": Unavailable(status, "NVML_ERROR_DRIVER_NOT_LOADED")})
    return dataclasses.replace(H100, system=system, gpus=())


@pytest.mark.parametrize(
    ("gpu_count", "policy_gpus", "expected"),
    [
        (8, 8, set()),
        (7, 8, {("gpu_count", CRIT, None, Action.REBOOT_NODE)}),
        (9, 8, {("gpu_count", WARN, None, Action.NONE)}),
        (3, 0, set()),  # no expectation, no check
    ],
)
def test_gpu_count(gpu_count: int, policy_gpus: int, expected: set[object]) -> None:
    sample = dataclasses.replace(H100, system=SystemInfo(gpu_count=gpu_count))
    policy = policy_from_dict({"node": {"expected_gpus": policy_gpus}})
    assert keys(inventory.check_gpu_count(sample, None, policy)) == expected


def test_gpu_count_falls_back_to_listed_gpus() -> None:
    sample = dataclasses.replace(healthy_node(gpus=6), system=SystemInfo())
    [found] = inventory.check_gpu_count(sample, None, EXPECT_8)
    assert found.evidence == {"gpus_seen": 6, "gpus_expected": 8}


def test_persistence_mode_off_warns_and_can_be_waived() -> None:
    sample = with_gpu(H100, 2, persistence_mode=False)
    assert keys(inventory.check_persistence_mode(sample, None, default_policy())) == {
        ("persistence_mode", WARN, 2, Action.NONE)
    }
    waived = policy_from_dict({"node": {"require_persistence_mode": False}})
    assert inventory.check_persistence_mode(sample, None, waived) == []


def test_vbios_mismatch() -> None:
    assert inventory.check_vbios(H100, None, default_policy()) == []
    [found] = inventory.check_vbios(
        with_gpu(H100, 5, vbios_version="96.00.74.00.1C"), None, default_policy()
    )
    assert found.severity is WARN and "GPU 5" in found.message


def test_lost_gpu_is_critical_reboot_and_treated_as_xid_79() -> None:
    found = reachability.check_gpu_lost(with_lost_gpu(H100, 4), None, default_policy())
    assert keys(found) == {("gpu_lost", CRIT, 4, Action.REBOOT_NODE)}
    assert found[0].evidence["xid"] == 79
    assert "XID 79" in found[0].message
    assert found[0].evidence["error"] == "NVML_ERROR_GPU_IS_LOST"


@pytest.mark.parametrize(
    ("status", "policy_gpus", "expected"),
    [
        (ReadStatus.ERROR, 8, {("nvml_unavailable", CRIT, None, Action.REBOOT_NODE)}),
        (ReadStatus.ERROR, 0, {("nvml_unavailable", UNKNOWN, None, Action.NONE)}),
        (ReadStatus.NOT_SUPPORTED, 0, set()),
        (ReadStatus.NOT_SUPPORTED, 8, {("nvml_unavailable", CRIT, None, Action.REBOOT_NODE)}),
    ],
)
def test_nvml_init_failure(status: ReadStatus, policy_gpus: int, expected: set[object]) -> None:
    policy = policy_from_dict({"node": {"expected_gpus": policy_gpus}})
    sample = _nvml_down(status)
    assert keys(reachability.check_nvml(sample, None, policy)) == expected
    # the count check leaves NVML failures to reachability: one finding, not two
    assert inventory.check_gpu_count(sample, None, policy) == []
