"""XID check: catalog judgement, grouping, GPU resolution by bus id, operator overrides."""

from __future__ import annotations

import pytest

from agent.checks.xid import CATALOG, check_xid, rule_for
from agent.model import Action, Severity
from agent.policy import default_policy, policy_from_dict
from tests.agent.samples import healthy_node, keys, with_xids, xid

CRIT, WARN, OK = Severity.CRITICAL, Severity.WARN, Severity.OK
H100 = healthy_node()

CATALOG_CASES = [
    (13, WARN, Action.RESTART_APP),
    (31, WARN, Action.RESTART_APP),
    (43, WARN, Action.NONE),
    (45, OK, Action.NONE),
    (48, CRIT, Action.RESET_GPU),
    (63, OK, Action.NONE),
    (64, CRIT, Action.RESET_GPU),
    (74, CRIT, Action.RESET_GPU),
    (79, CRIT, Action.REBOOT_NODE),
    (94, WARN, Action.RESTART_APP),
    (95, CRIT, Action.RESET_GPU),
    (119, CRIT, Action.RESET_GPU),
    (120, CRIT, Action.RESET_GPU),
    (140, CRIT, Action.RESET_GPU),
    (149, CRIT, Action.RESET_GPU),
    (154, OK, Action.NONE),
    (9999, WARN, Action.NONE),  # not in the catalog
]


@pytest.mark.parametrize(("code", "severity", "action"), CATALOG_CASES)
def test_xid_judged_by_catalog(code: int, severity: Severity, action: Action) -> None:
    found = check_xid(with_xids(H100, xid(code, gpu=2)), None, default_policy())
    assert keys(found) == {("xid", severity, 2, action)}
    assert found[0].evidence["xid"] == code
    assert f"XID {code}" in found[0].message


def test_dcgm_always_fatal_xids_are_critical() -> None:
    for code in (48, 74, 79, 95, 119, 120, 140):
        assert CATALOG[code].severity is CRIT


def test_no_events_no_findings() -> None:
    assert check_xid(H100, None, default_policy()) == []


def test_repeats_on_one_gpu_collapse_into_one_finding_with_count() -> None:
    sample = with_xids(
        H100, xid(13, gpu=1, timestamp=10.0), xid(13, gpu=1, timestamp=12.0), xid(13, gpu=4)
    )
    found = {f.gpu: f for f in check_xid(sample, None, default_policy())}
    assert set(found) == {1, 4}
    assert found[1].evidence["count"] == 2
    assert found[1].evidence["first_timestamp"] == 10.0
    assert found[1].evidence["last_timestamp"] == 12.0


@pytest.mark.parametrize(
    ("bus_id", "gpu"),
    [
        ("00000000:48:00.0", 3),  # NVML form of GPU 3's bus id in the sample
        ("0000:48:00", 3),  # kernel log form
        ("PCI:0000:48:00", 3),
        ("0000:99:00", None),  # no such GPU
        ("garbage", None),
    ],
)
def test_kernel_xid_without_index_is_mapped_by_bus_id(bus_id: str, gpu: int | None) -> None:
    sample = with_xids(H100, xid(79, gpu=None, pci_bus_id=bus_id, source="kmsg"))
    [found] = check_xid(sample, None, default_policy())
    assert found.gpu == gpu
    assert found.severity is CRIT


def test_operator_override_changes_one_xid_only() -> None:
    policy = policy_from_dict({"xid": {"43": {"severity": "critical", "action": "drain"}}})
    sample = with_xids(H100, xid(43, gpu=0), xid(13, gpu=0))
    assert keys(check_xid(sample, None, policy)) == {
        ("xid", CRIT, 0, Action.DRAIN),
        ("xid", WARN, 0, Action.RESTART_APP),
    }


def test_partial_override_keeps_catalog_action() -> None:
    policy = policy_from_dict({"xid": {"94": {"severity": "critical"}}})
    rule = rule_for(94, policy)
    assert (rule.severity, rule.action) == (CRIT, Action.RESTART_APP)
