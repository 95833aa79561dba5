"""PCIe replay-rate and link checks (table-driven, rates from two samples)."""

from __future__ import annotations

import pytest

from agent.checks import pcie
from agent.model import Action, Severity
from agent.policy import default_policy, policy_from_dict
from tests.agent.samples import healthy_node, keys, later, with_gpu

WARN = Severity.WARN
H100 = healthy_node()  # Gen5 x16: budget ceil(1.92 * 16) = 31 replays/min


@pytest.mark.parametrize(
    ("gen", "width", "budget"),
    [(1, 16, 3), (3, 16, 8), (4, 16, 16), (5, 16, 31), (6, 16, 62), (5, 8, 16), (7, 16, 123)],
)
def test_replay_budget_matches_dcgm(gen: int, width: int, budget: int) -> None:
    assert pcie.replay_budget_per_min(gen, width) == budget


@pytest.mark.parametrize(
    ("window_s", "replays", "warns"),
    [
        (60.0, 31, False),  # exactly the budget
        (60.0, 32, True),
        (120.0, 62, False),  # 31/min
        (120.0, 64, True),  # 32/min
        (5.0, 31, False),  # short window: raw count vs per-minute budget, no extrapolation
        (5.0, 40, True),
    ],
)
def test_replay_rate(window_s: float, replays: int, warns: bool) -> None:
    after = later(H100, window_s)
    after = with_gpu(after, 2, pcie_replay_count=replays)
    found = pcie.check_pcie_replay(after, H100, default_policy())
    assert keys(found) == ({("pcie_replay_rate", WARN, 2, Action.NONE)} if warns else set())


def test_replay_rate_needs_previous_sample() -> None:
    assert (
        pcie.check_pcie_replay(with_gpu(H100, 2, pcie_replay_count=10**6), None, default_policy())
        == []
    )


def test_replay_factor_from_policy() -> None:
    after = with_gpu(later(H100, 60.0), 2, pcie_replay_count=40)
    lenient = policy_from_dict({"sku": {"h100_sxm": {"pcie_replay_rate_factor": 2.0}}})
    assert len(pcie.check_pcie_replay(after, H100, default_policy())) == 1
    assert pcie.check_pcie_replay(after, H100, lenient) == []


def test_replaced_gpu_is_not_compared_with_the_old_one() -> None:
    after = with_gpu(later(H100, 60.0), 2, pcie_replay_count=500, uuid="GPU-new")
    assert pcie.check_pcie_replay(after, H100, default_policy()) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, set()),
        ({"pcie_gen_current": 1}, set()),  # idle power saving, not a fault
        ({"pcie_width_current": 8}, {"pcie_width_degraded", "pcie_width_below_min"}),
        ({"pcie_width_current": 8, "pcie_width_max": 8}, {"pcie_width_below_min"}),
        ({"pcie_gen_max": 4}, {"pcie_gen_below_min"}),
    ],
)
def test_pcie_link(fields: dict[str, int], expected: set[str]) -> None:
    found = pcie.check_pcie_link(with_gpu(H100, 5, **fields), None, default_policy())
    assert {f.check for f in found} == expected
    assert all(f.severity is WARN and f.gpu == 5 for f in found)


def test_gb300_does_not_judge_pcie_width() -> None:
    sample = with_gpu(healthy_node("gb300"), 1, pcie_width_current=4)
    assert pcie.check_pcie_link(sample, None, default_policy()) == []
