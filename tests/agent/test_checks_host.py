"""Host checks: memory, disks, load, services, IB ports and counters, rails (table-driven)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.checks import host
from agent.checks.readings import CheckFn
from agent.model import Action, NodeSample, ReadStatus, Severity, Unavailable
from agent.policy import default_policy, policy_from_dict
from tests.agent.samples import (
    FindingKey,
    healthy_host,
    healthy_node,
    ib_port,
    keys,
    later,
    with_host,
    with_ib_port,
    with_lost_gpu,
)

CRIT, WARN, UNKNOWN = Severity.CRITICAL, Severity.WARN, Severity.UNKNOWN
H100 = healthy_node()
HOST = healthy_host()  # H100's host
GB300 = healthy_node("gb300")
Case = tuple[CheckFn, Callable[[NodeSample], NodeSample], set[FindingKey]]
ERROR = Unavailable(ReadStatus.ERROR, "psutil: permission denied")

CASES: dict[str, Case] = {
    "memory fine": (host.check_host_memory, lambda s: s, set()),
    "memory low": (
        host.check_host_memory,
        lambda s: with_host(s, mem_available_bytes=50 * 1024**3),  # 2.4 % of 2 TiB
        {("host_memory_low", WARN, None, Action.NONE)},
    ),
    "memory unreadable": (
        host.check_host_memory,
        lambda s: with_host(
            s, mem_available_bytes=None, unavailable={"mem_available_bytes": ERROR}
        ),
        {("host_memory", UNKNOWN, None, Action.NONE)},
    ),
    "disk 85 %": (
        host.check_disks,
        lambda s: with_host(s, disks={"/": 0.85}),
        {("disk_full", WARN, None, Action.NONE)},
    ),
    "disk 96 %": (
        host.check_disks,
        lambda s: with_host(s, disks={"/": 0.3, "/scratch": 0.96}),
        {("disk_full", CRIT, None, Action.DRAIN)},
    ),
    "load high": (
        host.check_load,
        lambda s: with_host(s, load1=600.0, cpu_count=224),
        {("load_high", WARN, None, Action.NONE)},
    ),
    "service down": (
        host.check_services,
        lambda s: with_host(s, services={"nvidia-persistenced": False}),
        {("service_down", CRIT, None, Action.DRAIN)},
    ),
    "port down": (
        host.check_ib_ports,
        lambda s: with_ib_port(s, "mlx5_3", state="DOWN", phys_state="Polling"),
        {("ib_port_down", CRIT, None, Action.DRAIN)},
    ),
    "port at HDR on an NDR node": (
        host.check_ib_ports,
        lambda s: with_ib_port(s, "mlx5_3", rate_gbps=200.0),
        {("ib_rate_low", WARN, None, Action.NONE)},
    ),
    "ports unreadable": (
        host.check_ib_ports,
        lambda s: with_host(s, ib_ports=(), unavailable={"ib_ports": ERROR}),
        {("ib_ports", UNKNOWN, None, Action.NONE)},
    ),
    "rails not expected by default": (
        host.check_rails,
        lambda s: with_host(s, rails={}),
        set(),
    ),
    "host read failed": (
        host.check_host_read,
        lambda s: with_host(s, unavailable={"host": ERROR}),
        {("host", UNKNOWN, None, Action.NONE)},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_host_checks(case: Case) -> None:
    check, change, expected = case
    assert keys(check(change(H100), None, default_policy())) == expected


def test_no_host_sample_no_findings() -> None:
    sample = healthy_node(host=False)
    for check in (host.check_host_memory, host.check_disks, host.check_ib_ports, host.check_rails):
        assert check(sample, None, default_policy()) == []


def test_gb300_needs_xdr_rate() -> None:
    ndr = with_ib_port(GB300, "mlx5_1", rate_gbps=400.0)
    [found] = host.check_ib_ports(ndr, None, default_policy())
    assert found.check == "ib_rate_low" and found.evidence["threshold"] == 800.0


def test_port_count_and_device_filter() -> None:
    policy = policy_from_dict(
        {"rails": {"expected_ib_ports": 8, "ib_devices": [f"mlx5_{n}" for n in range(8)]}}
    )
    assert host.check_ib_ports(H100, None, policy) == []
    storage_nic = ib_port("mlx5_8", state="DOWN", phys_state="Disabled")
    with_storage_nic_down = with_host(H100, ib_ports=(*HOST.ib_ports, storage_nic))
    assert host.check_ib_ports(with_storage_nic_down, None, policy) == []  # not watched
    missing_two = with_host(H100, ib_ports=HOST.ib_ports[:6])
    assert keys(host.check_ib_ports(missing_two, None, policy)) == {
        ("ib_port_count", CRIT, None, Action.DRAIN)
    }


@pytest.mark.parametrize(
    ("counters", "expected"),
    [
        ({}, set()),
        ({"link_downed": 1}, {"ib_link_downed"}),
        ({"symbol_error": 3}, {"ib_symbol_errors"}),
        ({"port_rcv_errors": 100}, set()),
    ],
)
def test_ib_counter_growth(counters: dict[str, int], expected: set[str]) -> None:
    base = dict(HOST.ib_ports[2].counters)
    after = with_ib_port(later(H100, 60.0), "mlx5_2", counters={**base, **counters})
    found = host.check_ib_counters(after, H100, default_policy())
    assert {f.check for f in found} == expected
    assert all(f.severity is WARN and f.evidence["port"] == "mlx5_2/1" for f in found)
    assert host.check_ib_counters(after, None, default_policy()) == []


def test_required_services_from_host_and_sku() -> None:
    policy = policy_from_dict(
        {
            "host": {"required_services": ["nvidia-persistenced"]},
            "sku": {"h100_sxm": {"required_services": ["nvidia-fabricmanager"]}},
        }
    )
    assert keys(host.check_services(H100, None, policy)) == {
        ("service_unknown", UNKNOWN, None, Action.NONE)  # fabricmanager was never reported
    }
    reported = with_host(
        H100, services={"nvidia-persistenced": True, "nvidia-fabricmanager": False}
    )
    assert keys(host.check_services(reported, None, policy)) == {
        ("service_down", CRIT, None, Action.DRAIN)
    }


def test_rails_expected() -> None:
    policy = policy_from_dict({"rails": {"expected": True}})
    assert host.check_rails(H100, None, policy) == []
    partial = with_host(H100, rails={k: v for k, v in HOST.rails.items() if k != 6})
    assert keys(host.check_rails(partial, None, policy)) == {("rail_missing", WARN, 6, Action.NONE)}
    lost_gpu_6 = with_lost_gpu(partial, 6)
    assert host.check_rails(lost_gpu_6, None, policy) == []  # reachability reports that GPU


def test_unreadable_port_state_is_not_reported_as_down() -> None:
    from agent.checks.host import check_ib_ports
    from agent.model import ReadStatus, Unavailable
    from agent.policy import default_policy
    from tests.agent.samples import healthy_node, with_host, with_ib_port

    sample = healthy_node("h100_sxm")
    assert sample.host is not None
    device = sample.host.ib_ports[0].device
    sample = with_ib_port(sample, device, state="", phys_state="")
    sample = with_host(sample, unavailable={"ib_ports": Unavailable(ReadStatus.ERROR, "EIO")})
    findings = check_ib_ports(sample, None, default_policy())
    assert not any(f.check == "ib_port_down" for f in findings)
    assert any(f.severity.value == "unknown" for f in findings)
