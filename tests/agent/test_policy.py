"""Policy loading: shipped defaults, operator overlay, SKU inheritance, every problem at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.checks import evaluate
from agent.model import Action, Severity
from agent.policy import (
    DEFAULT_SKU,
    PolicyError,
    XidOverride,
    default_policy,
    load_policy,
    policy_from_dict,
    sku_of,
)
from tests.agent.samples import healthy_node, with_gpu


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_policy_loads_with_the_documented_skus() -> None:
    policy = load_policy(None)
    assert set(policy.skus) == {DEFAULT_SKU, "h100_sxm", "gb300"}
    assert policy.node.expected_gpus == 0
    assert policy.sku is None
    h100, gb300 = policy.skus["h100_sxm"], policy.skus["gb300"]
    assert (h100.expected_ib_rate_gbps, gb300.expected_ib_rate_gbps) == (400.0, 800.0)
    assert (h100.fabric_expected, gb300.fabric_expected) == (False, True)
    assert (h100.expected_nvlinks, h100.min_pcie_gen, h100.min_pcie_width) == (18, 5, 16)
    assert h100.retired_pages_limit == 63 and h100.uncorrectable_remap_limit == 512


def test_skus_inherit_default_and_override_only_what_they_name() -> None:
    policy = policy_from_dict({"sku": {"default": {"temp_margin_c": 9.0}}})
    assert policy.skus["h100_sxm"].temp_margin_c == 9.0  # inherited after the overlay
    assert policy.skus["h100_sxm"].expected_nvlinks == 18  # its own value kept


def test_operator_file_overlays_the_shipped_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [node]
        expected_gpus = 8

        [sku.h100_sxm]
        expected_ib_rate_gbps = 200

        [xid.43]
        severity = "critical"
        action = "drain"
        """,
    )
    policy = load_policy(path)
    assert policy.node.expected_gpus == 8
    assert policy.node.require_persistence_mode is True  # untouched default
    assert policy.skus["h100_sxm"].expected_ib_rate_gbps == 200.0
    assert policy.skus["gb300"].expected_ib_rate_gbps == 800.0
    assert policy.xid_overrides[43] == XidOverride(Severity.CRITICAL, Action.DRAIN)


def test_every_problem_is_listed_at_once_with_its_key_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        [node]
        expected_gpus = -1
        expected_gpu = 8

        [host]
        disk_warn_fraction = 1.5
        required_services = "sshd"

        [sku.h100_sxm]
        temp_margin_c = "hot"
        warn_clock_events = ["hw_slowdown", "sw_overheat"]
        fabric_expected = 1

        [sku.H200]

        [xid.foo]
        severity = "warn"

        [xid.43]
        severity = "fatal"

        [extra]
        """,
    )
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    problems = caught.value.problems
    expected_paths = [
        "extra",
        "node.expected_gpus",
        "node.expected_gpu",
        "host.disk_warn_fraction",
        "host.required_services",
        "sku.h100_sxm.temp_margin_c",
        "sku.h100_sxm.warn_clock_events",
        "sku.h100_sxm.fabric_expected",
        "sku.H200",
        "xid.foo",
        "xid.43.severity",
    ]
    for key_path in expected_paths:
        assert any(p.startswith(f"{key_path}:") for p in problems), (key_path, problems)
    assert len(problems) == len(expected_paths)
    assert str(path) in str(caught.value)
    assert "did you mean 'expected_gpus'" in next(p for p in problems if "expected_gpu:" in p)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"node": {"expected_gpus": True}}, "expected an integer"),
        ({"node": {"expected_gpus": 1.5}}, "expected an integer"),
        ({"host": {"max_load_per_cpu": 0}}, "must be in (0, 1000]"),
        ({"sku": {"gb300": {"expected_nvlinks": 37}}}, "between 0 and 36"),
        ({"sku": {"gb300": {"match": ["", "B300"]}}}, "non-empty strings"),
        ({"rails": {"ib_devices": [1]}}, "non-empty strings"),
        ({"node": 3}, "expected a table"),
        ({"xid": {"48": {}}}, "give severity and/or action"),
        ({"xid": {"0": {"severity": "ok"}}}, "named by number"),
        ({"host": {"disk_warn_fraction": 0.97}}, "must not exceed host.disk_critical_fraction"),
    ],
)
def test_single_problems(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy_from_dict(overrides)
    assert any(fragment in p for p in caught.value.problems), caught.value.problems


def test_unreadable_and_malformed_files_are_policy_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(_write(tmp_path, "[node\nexpected_gpus = 8"))


def test_pinned_sku_must_exist() -> None:
    assert load_policy(None, sku="gb300").sku == "gb300"
    with pytest.raises(PolicyError, match=r"no \[sku.h200\] section"):
        load_policy(None, sku="h200")


@pytest.mark.parametrize(
    ("name", "sku"),
    [
        ("NVIDIA H100 80GB HBM3", "h100_sxm"),
        ("NVIDIA H100 SXM5 80GB", "h100_sxm"),
        ("NVIDIA H100 PCIe", DEFAULT_SKU),
        ("NVIDIA H100 NVL", DEFAULT_SKU),
        ("NVIDIA GB300", "gb300"),
        ("NVIDIA B300 SXM6 AC", "gb300"),
        ("NVIDIA A100-SXM4-80GB", DEFAULT_SKU),
        ("", DEFAULT_SKU),
    ],
)
def test_sku_of(name: str, sku: str) -> None:
    assert sku_of(name) == sku
    assert default_policy().sku_for(name) == sku


def test_operator_sku_section_with_match_strings_takes_precedence() -> None:
    policy = policy_from_dict({"sku": {"h200": {"match": ["H200"], "expected_nvlinks": 18}}})
    assert policy.sku_for("NVIDIA H200") == "h200"
    assert policy.skus["h200"].temp_margin_c == policy.skus[DEFAULT_SKU].temp_margin_c
    assert policy.node_sku(healthy_node()) == "h100_sxm"


def test_pinned_sku_judges_the_node_whatever_its_gpu_names() -> None:
    sample = with_gpu(healthy_node(gpus=1), 0, pcie_width_current=8, name="NVIDIA H100 PCIe")
    unpinned = default_policy()
    pinned = load_policy(None, sku="h100_sxm")
    assert unpinned.limits_for(sample).name == DEFAULT_SKU
    assert pinned.limits_for(sample).name == "h100_sxm"
    assert {f.check for f in evaluate(sample, None, pinned)} >= {"pcie_width_below_min"}
    assert "pcie_width_below_min" not in {f.check for f in evaluate(sample, None, unpinned)}


def test_operator_override_changes_a_verdict(tmp_path: Path) -> None:
    sample = with_gpu(healthy_node(), 0, remapped_rows_uncorrectable=300)
    assert evaluate(sample, None, default_policy()) == ()
    strict = load_policy(_write(tmp_path, "[sku.h100_sxm]\nuncorrectable_remap_limit = 256\n"))
    assert [f.check for f in evaluate(sample, None, strict)] == ["row_remap_uncorrectable_limit"]


def test_policy_is_immutable() -> None:
    policy = default_policy()
    with pytest.raises(AttributeError):
        policy.node.expected_gpus = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.skus["evil"] = policy.skus[DEFAULT_SKU]  # type: ignore[index]
