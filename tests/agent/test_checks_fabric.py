"""NVLink fabric registration: state, status and the health mask."""

from __future__ import annotations

import pytest

from agent.checks import fabric
from agent.model import Action, FabricInfo, ReadStatus, Severity
from agent.policy import default_policy
from tests.agent.samples import (
    CLUSTER_UUID,
    HEALTHY_FABRIC_MASK,
    healthy_node,
    keys,
    with_gpu,
    with_unavailable,
)

CRIT, WARN = Severity.CRITICAL, Severity.WARN
GB300 = healthy_node("gb300")  # fabric expected
H100 = healthy_node()  # fabric not expected


def _flag(*shifts: int) -> int:
    """The healthy mask with these 2-bit problem flags set TRUE (1)."""
    mask = HEALTHY_FABRIC_MASK
    for shift in shifts:
        mask = (mask & ~(0x3 << shift)) | (1 << shift)
    return mask


@pytest.mark.parametrize(
    ("mask", "problems"),
    [
        (HEALTHY_FABRIC_MASK, []),
        (0, []),  # every field NOT_SUPPORTED
        (_flag(0), ["degraded_bw"]),
        (_flag(2), ["route_recovery"]),
        (_flag(4), ["route_unhealthy"]),
        (_flag(6), ["access_timeout_recovery"]),
        ((HEALTHY_FABRIC_MASK & ~(0xF << 8)) | (5 << 8), ["insufficient_nvlinks"]),
        (_flag(0, 4), ["degraded_bw", "route_unhealthy"]),
        (HEALTHY_FABRIC_MASK | (1 << 12) | (2 << 14), []),  # partition / GFM state: not faults
    ],
)
def test_health_mask_decoding(mask: int, problems: list[str]) -> None:
    assert fabric.health_problems(mask) == problems


@pytest.mark.parametrize(
    ("sample", "info", "expected"),
    [
        (GB300, FabricInfo(3, 0, CLUSTER_UUID, 1, HEALTHY_FABRIC_MASK), set()),
        (GB300, FabricInfo(2, 0, "", 0, 0), {("fabric_state", WARN, Action.NONE)}),
        (GB300, FabricInfo(1, 0, "", 0, 0), {("fabric_state", CRIT, Action.DRAIN)}),
        (GB300, FabricInfo(0, 0, "", 0, 0), {("fabric_state", CRIT, Action.DRAIN)}),
        (H100, FabricInfo(0, 0, "", 0, 0), set()),  # not expected on H100 HGX
        (H100, FabricInfo(1, 0, "", 0, 0), {("fabric_state", CRIT, Action.DRAIN)}),
        (
            GB300,
            FabricInfo(3, 999, CLUSTER_UUID, 1, 0),
            {("fabric_status", CRIT, Action.REBOOT_NODE)},
        ),
        (
            GB300,
            FabricInfo(3, 0, CLUSTER_UUID, 1, _flag(4)),
            {("fabric_health", CRIT, Action.DRAIN)},
        ),
    ],
)
def test_fabric_states(
    sample: object, info: FabricInfo, expected: set[tuple[str, Severity, Action]]
) -> None:
    assert sample is GB300 or sample is H100
    found = fabric.check_fabric(with_gpu(sample, 0, fabric=info), None, default_policy())
    assert {(f.check, f.severity, f.action) for f in found} == expected
    assert all(f.gpu == 0 for f in found)


def test_fabric_not_supported_read_is_silent_even_when_expected() -> None:
    sample = with_unavailable(GB300, 2, "fabric", status=ReadStatus.NOT_SUPPORTED)
    assert fabric.check_fabric(sample, None, default_policy()) == []


def test_fabric_read_error_is_unknown() -> None:
    sample = with_unavailable(GB300, 2, "fabric")
    assert keys(fabric.check_fabric(sample, None, default_policy())) == {
        ("fabric", Severity.UNKNOWN, 2, Action.NONE)
    }


def test_health_finding_carries_domain_identity() -> None:
    sample = with_gpu(GB300, 3, fabric=FabricInfo(3, 0, CLUSTER_UUID, 7, _flag(0)))
    [found] = fabric.check_fabric(sample, None, default_policy())
    assert found.evidence["cluster_uuid"] == CLUSTER_UUID
    assert found.evidence["clique_id"] == 7
    assert found.evidence["problems"] == "degraded_bw"
