"""NVLink state, DL error rates (two samples) and NVLink5 counters."""

from __future__ import annotations

import pytest

from agent.checks import nvlink
from agent.model import Action, NvLinkSample, ReadStatus, Severity
from agent.policy import default_policy, policy_from_dict
from tests.agent.samples import (
    healthy_node,
    keys,
    later,
    with_gpu,
    with_nvlink,
    with_nvlink5,
    with_unavailable,
)

CRIT, WARN = Severity.CRITICAL, Severity.WARN
H100 = healthy_node()
GB300 = healthy_node("gb300")


def test_a_down_link_is_critical() -> None:
    found = nvlink.check_nvlink_state(with_nvlink(H100, 6, 11, up=False), None, default_policy())
    assert keys(found) == {("nvlink_down", CRIT, 6, Action.REBOOT_NODE)}
    assert found[0].evidence["links_down"] == "11"
    assert found[0].evidence["links_up"] == 17


def test_fewer_links_than_the_sku_expects_is_critical() -> None:
    sample = with_gpu(H100, 0, nvlinks=tuple(NvLinkSample(n, True) for n in range(12)))
    found = nvlink.check_nvlink_state(sample, None, default_policy())
    assert keys(found) == {("nvlink_down", CRIT, 0, Action.REBOOT_NODE)}
    assert found[0].evidence["links_expected"] == 18


def test_pcie_gpu_without_nvlink_is_silent() -> None:
    sample = with_unavailable(H100, 0, "nvlinks", status=ReadStatus.NOT_SUPPORTED)
    assert nvlink.check_nvlink_state(sample, None, default_policy()) == []


@pytest.mark.parametrize(
    ("attr", "count", "expected"),
    [
        ("replay_errors", 1, {("nvlink_replay", CRIT, 4, Action.RESET_GPU)}),
        ("recovery_errors", 1, {("nvlink_recovery", CRIT, 4, Action.RESET_GPU)}),
        ("crc_flit_errors", 5, {("nvlink_crc", WARN, 4, Action.NONE)}),
        ("crc_data_errors", 5999, {("nvlink_crc", WARN, 4, Action.NONE)}),  # 99.98/s
        ("crc_data_errors", 6000, {("nvlink_crc", CRIT, 4, Action.RESET_GPU)}),  # 100/s
    ],
)
def test_dl_counter_growth_over_a_minute(attr: str, count: int, expected: set[object]) -> None:
    after = with_nvlink(later(H100, 60.0), 4, 2, **{attr: count})
    assert keys(nvlink.check_nvlink_errors(after, H100, default_policy())) == expected


def test_dl_counters_need_a_previous_sample() -> None:
    sample = with_nvlink(H100, 4, 2, replay_errors=50)
    assert nvlink.check_nvlink_errors(sample, None, default_policy()) == []


def test_operator_raises_crc_warn_delta() -> None:
    after = with_nvlink(later(H100, 60.0), 4, 2, crc_flit_errors=5)
    quiet = policy_from_dict({"sku": {"h100_sxm": {"nvlink_crc_warn_delta": 10}}})
    assert nvlink.check_nvlink_errors(after, H100, quiet) == []


def test_blackwell_links_without_dl_counters_are_not_judged() -> None:
    after = later(GB300, 60.0)
    assert nvlink.check_nvlink_errors(after, GB300, default_policy()) == []


@pytest.mark.parametrize(
    ("counters", "with_previous", "expected"),
    [
        ({"link_recovery_failed_events": 1}, False, {"nvlink5_recovery_failed"}),
        ({"link_recovery_successful_events": 3}, False, {"nvlink5_recovery_successful"}),
        ({"symbol_errors": 1}, True, {"nvlink5_errors"}),
        ({"symbol_errors": 1}, False, set()),  # growth needs a previous sample
        ({"xmit_discards": 2, "rcv_errors": 1}, True, {"nvlink5_errors"}),
        ({"link_recovery_events": 9}, True, set()),  # total of the two judged above
        ({"NVML_FI_DEV_NVLINK_COUNT_RCV_ERRORS": 4}, True, {"nvlink5_errors"}),
    ],
)
def test_nvlink5_counters(
    counters: dict[str, int], with_previous: bool, expected: set[str]
) -> None:
    after = with_nvlink5(later(GB300, 30.0), 1, **counters)
    found = nvlink.check_nvlink5(after, GB300 if with_previous else None, default_policy())
    assert {f.check for f in found} == expected
    assert all(f.gpu == 1 for f in found)


def test_nvlink5_error_growth_evidence_lists_counters() -> None:
    after = with_nvlink5(later(GB300, 30.0), 1, xmit_discards=2, rcv_errors=1)
    [found] = nvlink.check_nvlink5(after, GB300, default_policy())
    assert found.severity is CRIT and found.action is Action.RESET_GPU
    assert found.evidence["xmit_discards"] == 2 and found.evidence["rcv_errors"] == 1
