"""Memory checks: ECC, row remapping, page retirement, recovery action (table-driven)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agent.checks import memory
from agent.checks.readings import CheckFn
from agent.model import Action, NodeSample, ReadStatus, Severity
from agent.policy import Policy, default_policy, policy_from_dict
from tests.agent.samples import FindingKey, healthy_node, keys, with_gpu, with_unavailable

CRIT, WARN, UNKNOWN = Severity.CRITICAL, Severity.WARN, Severity.UNKNOWN
H100 = healthy_node()
Case = tuple[CheckFn, Callable[[NodeSample], NodeSample], set[FindingKey]]

CASES: dict[str, Case] = {
    "healthy": (memory.check_ecc, lambda s: s, set()),
    "dbe on gpu 3": (
        memory.check_ecc,
        lambda s: with_gpu(s, 3, ecc_dbe_volatile=2),
        {("ecc_volatile_dbe", CRIT, 3, Action.RESET_GPU)},
    ),
    "sbe alone is fine": (memory.check_ecc, lambda s: with_gpu(s, 1, ecc_sbe_volatile=900), set()),
    "dbe read error": (
        memory.check_ecc,
        lambda s: with_unavailable(s, 5, "ecc_dbe_volatile"),
        {("ecc", UNKNOWN, 5, Action.NONE)},
    ),
    "dbe not supported (ECC off)": (
        memory.check_ecc,
        lambda s: with_unavailable(s, 5, "ecc_dbe_volatile", status=ReadStatus.NOT_SUPPORTED),
        set(),
    ),
    "remap failure": (
        memory.check_row_remap,
        lambda s: with_gpu(s, 2, remap_failure=True),
        {("row_remap_failure", CRIT, 2, Action.RESET_GPU)},
    ),
    "remap pending": (
        memory.check_row_remap,
        lambda s: with_gpu(s, 0, remap_pending=True),
        {("row_remap_pending", WARN, 0, Action.RESET_GPU)},
    ),
    "511 uncorrectable rows": (
        memory.check_row_remap,
        lambda s: with_gpu(s, 4, remapped_rows_uncorrectable=511),
        set(),
    ),
    "512 uncorrectable rows": (
        memory.check_row_remap,
        lambda s: with_gpu(s, 4, remapped_rows_uncorrectable=512),
        {("row_remap_uncorrectable_limit", WARN, 4, Action.SERVICE)},
    ),
    "unrepairable": (
        memory.check_row_remap,
        lambda s: with_gpu(s, 7, memory_unrepairable=True),
        {("memory_unrepairable", CRIT, 7, Action.SERVICE)},
    ),
    "two remap fields unreadable -> one unknown": (
        memory.check_row_remap,
        lambda s: with_unavailable(s, 1, "remap_failure", "remap_pending"),
        {("row_remap", UNKNOWN, 1, Action.NONE)},
    ),
    "retired pages not supported on H100": (memory.check_retired_pages, lambda s: s, set()),
    "62 retired pages": (
        memory.check_retired_pages,
        lambda s: with_gpu(s, 0, retired_pages_sbe=40, retired_pages_dbe=22, unavailable={}),
        set(),
    ),
    "63 retired pages": (
        memory.check_retired_pages,
        lambda s: with_gpu(s, 0, retired_pages_sbe=40, retired_pages_dbe=23, unavailable={}),
        {("retired_pages_limit", CRIT, 0, Action.SERVICE)},
    ),
    "retirement pending": (
        memory.check_retired_pages,
        lambda s: with_gpu(s, 6, retired_pages_pending=True, unavailable={}),
        {("retired_pages_pending", WARN, 6, Action.RESET_GPU)},
    ),
    "recovery GPU_RESET": (
        memory.check_recovery_action,
        lambda s: with_gpu(s, 1, recovery_action=1),
        {("recovery_action", CRIT, 1, Action.RESET_GPU)},
    ),
    "recovery NODE_REBOOT": (
        memory.check_recovery_action,
        lambda s: with_gpu(s, 1, recovery_action=2),
        {("recovery_action", CRIT, 1, Action.REBOOT_NODE)},
    ),
    "recovery DRAIN_P2P": (
        memory.check_recovery_action,
        lambda s: with_gpu(s, 1, recovery_action=3),
        {("recovery_action", WARN, 1, Action.DRAIN)},
    ),
    "recovery DRAIN_AND_RESET": (
        memory.check_recovery_action,
        lambda s: with_gpu(s, 1, recovery_action=4),
        {("recovery_action", CRIT, 1, Action.RESET_GPU)},
    ),
    "recovery code unknown to us": (
        memory.check_recovery_action,
        lambda s: with_gpu(s, 1, recovery_action=42),
        {("recovery_action", WARN, 1, Action.NONE)},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_memory_checks(case: Case) -> None:
    check, change, expected = case
    assert keys(check(change(H100), None, default_policy())) == expected


def test_dbe_finding_names_gpu_value_and_remedy() -> None:
    [found] = memory.check_ecc(with_gpu(H100, 3, ecc_dbe_volatile=2), None, default_policy())
    assert found.gpu == 3
    assert "GPU 3" in found.message and "reset" in found.message
    assert found.evidence == {"ecc_dbe_volatile": 2, "threshold": 0}


def test_unknown_finding_names_field_and_nvml_error() -> None:
    sample = with_unavailable(H100, 5, "ecc_dbe_volatile", detail="NVML_ERROR_TIMEOUT")
    [found] = memory.check_ecc(sample, None, default_policy())
    assert "ecc_dbe_volatile" in found.message and "NVML_ERROR_TIMEOUT" in found.message
    assert found.evidence["ecc_dbe_volatile"] == "NVML_ERROR_TIMEOUT"


def test_operator_lowers_remap_limit() -> None:
    sample = with_gpu(H100, 4, remapped_rows_uncorrectable=100)
    strict: Policy = policy_from_dict({"sku": {"h100_sxm": {"uncorrectable_remap_limit": 64}}})
    assert memory.check_row_remap(sample, None, default_policy()) == []
    [found] = memory.check_row_remap(sample, None, strict)
    assert found.evidence["threshold"] == 64
