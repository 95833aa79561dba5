"""dcgm-exporter's stock Grafana dashboard (vendored in dashboards/upstream/) against the agent:
a cheap static check that the agent exports every metric it queries, with the labels it
filters on, except the DCGM_FI_PROF_* profiling fields, which dashboards/README.md documents
as a gap. (tests/agent/ checks the agent serves them over HTTP and to a real Prometheus.)"""

from __future__ import annotations

import pytest

from agent.exporter.names import ALL_SPECS, METRIC_NAMES
from dashboards.promql import read
from tests.dashboards.docs import REPO, STOCK_DASHBOARD, load

README = REPO / "dashboards" / "README.md"
TARGET_LABELS = {"instance", "job"}


def stock_queries() -> list[str]:
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                out.append(node["expr"])
            query = node.get("query")
            if isinstance(query, str) and "label_values" in query:
                out.append(query)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(load(STOCK_DASHBOARD))
    return out


def stock_metrics() -> set[str]:
    return {m for q in stock_queries() for m in read(q).metrics}


def test_the_agent_exports_every_non_profiling_metric_the_stock_dashboard_queries() -> None:
    wanted = {m for m in stock_metrics() if not m.startswith("DCGM_FI_PROF_")}

    assert not wanted - set(METRIC_NAMES), sorted(wanted - set(METRIC_NAMES))
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"} <= wanted  # fmt: skip


def test_the_stock_dashboard_filters_only_on_labels_the_agent_sets() -> None:
    labels = {s.name: set(s.labels) for s in ALL_SPECS}
    problems = []
    for q in stock_queries():
        names = read(q)
        for metric, used in names.selectors:
            if metric in labels and used - labels[metric] - TARGET_LABELS:
                problems.append(f"{q}: {sorted(used - labels[metric] - TARGET_LABELS)}")
        for metric in names.metrics & set(labels):
            grouped = names.labels - {lbl for _, ls in names.selectors for lbl in ls}
            if grouped - labels[metric] - TARGET_LABELS:
                problems.append(f"{q}: groups on {sorted(grouped - labels[metric])}")

    assert not problems, "\n".join(problems)


def test_the_profiling_gap_is_documented_and_never_filled_with_made_up_values() -> None:
    prof = {m for m in stock_metrics() if m.startswith("DCGM_FI_PROF_")}
    text = README.read_text(encoding="utf-8")

    assert prof == {"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"}
    assert not prof & set(METRIC_NAMES)
    assert not any(name.startswith("DCGM_FI_PROF_") for name in METRIC_NAMES)
    assert all(name in text for name in prof), "dashboards/README.md must name the gap"
    assert "profiling module" in text


def test_the_vendored_copy_matches_the_shared_reference_when_present() -> None:
    shared = REPO.parent / "shared" / "data" / "dcgm-exporter" / STOCK_DASHBOARD.name
    if not shared.is_file():
        pytest.skip("shared/data/dcgm-exporter/ not beside the repository")
    assert shared.read_bytes() == STOCK_DASHBOARD.read_bytes()
