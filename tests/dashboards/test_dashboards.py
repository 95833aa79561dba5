"""The committed dashboards: regenerating changes nothing, every query reads only contract
metrics (with labels those metrics carry), host filters accept both spellings, the layout is
valid Grafana grid, and every variable a query uses is defined."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from dashboards import build
from dashboards.metrics_contract import PROMETHEUS_SERIES, lookup
from dashboards.promql import read
from tests.dashboards.docs import (
    committed,
    panels,
    targets,
    variable_promql,
    variables,
)

TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every scraped series
EXPECTED = {"fleet-overview.json", "node-detail.json", "training-run.json", "burnin.json"}


def test_regenerating_changes_nothing() -> None:
    out_of_date = build.stale()

    assert not out_of_date, f"run python -m dashboards.build; out of date: {out_of_date}"


def test_stale_notices_an_edited_or_missing_file(tmp_path: Path) -> None:
    build.write(tmp_path)
    assert build.stale(tmp_path) == []
    edited = tmp_path / build.RULES_FILE
    edited.write_text(edited.read_text().replace("for: 2m", "for: 3m", 1))
    (tmp_path / build.DASHBOARD_DIR / "burnin.json").unlink()

    assert sorted(build.stale(tmp_path)) == sorted(
        [build.RULES_FILE, build.DASHBOARD_DIR / "burnin.json"]
    )


def test_the_four_dashboards_are_committed_with_distinct_uids() -> None:
    docs = committed()

    assert set(docs) == EXPECTED
    assert len({d["uid"] for d in docs.values()}) == len(docs)
    assert all(d["schemaVersion"] == 41 for d in docs.values())


def all_queries() -> list[tuple[str, str]]:
    out = []
    for name, doc in committed().items():
        out += [(f"{name}: {t.panel}", t.expr) for t in targets(name, doc)]
        out += [(f"{name}: variable {v['name']}", v["query"])
                for v in variables(doc) if v.get("type") == "query"]  # fmt: skip
    return out


def test_every_query_reads_only_contract_metrics_with_their_labels() -> None:
    problems = []
    for where, expr in all_queries():
        names = read(expr)
        for metric in sorted(names.metrics):
            if metric not in PROMETHEUS_SERIES and lookup(metric) is None:
                problems.append(f"{where}: {metric} is not in the metric contract")
        for metric, labels in names.selectors:
            family = lookup(metric)
            if family is None:
                continue
            unknown = labels - set(family.series_labels(metric)) - TARGET_LABELS
            if unknown:
                problems.append(f"{where}: {metric} has no label(s) {sorted(unknown)}")

    assert not problems, "\n".join(problems)


def test_the_checks_above_catch_a_made_up_metric_and_label() -> None:
    names = read('gpufleet_gpu_temprature{gpu="0"} + gpufleet_gpu_lost{node="x"}')

    assert lookup("gpufleet_gpu_temprature") is None
    family = lookup("gpufleet_gpu_lost")
    assert family is not None
    assert ("gpufleet_gpu_lost", frozenset({"node"})) in names.selectors
    assert "node" not in family.labels


def host_spellings(expr: str) -> dict[str, set[str]]:
    """dcgm-style metric -> the host label spellings its selectors in `expr` filter on."""
    out: dict[str, set[str]] = {}
    for metric, labels in read(expr).selectors:
        family = lookup(metric)
        if family is not None and "Hostname" in family.labels:
            out.setdefault(metric, set()).update(labels & {"hostname", "Hostname"})
    return out


def test_every_host_filter_accepts_both_spellings() -> None:
    both = {"hostname", "Hostname"}
    problems = [
        f"{where}: {metric} filtered on {sorted(used)} only"
        for where, expr in all_queries()
        for metric, used in host_spellings(expr).items()
        if used and used != both
    ]

    assert not problems, "\n".join(problems)
    assert host_spellings('DCGM_FI_DEV_GPU_TEMP{hostname="a"}') == {
        "DCGM_FI_DEV_GPU_TEMP": {"hostname"}
    }
    assert any(host_spellings(expr) for _, expr in all_queries())


def test_every_variable_a_query_uses_is_defined() -> None:
    builtin = {"__rate_interval", "__interval", "__range", "datasource"}
    problems = []
    for name, doc in committed().items():
        defined = {v["name"] for v in variables(doc)} | builtin
        texts = [t.expr for t in targets(name, doc)] + [
            str(v.get("query", "")) for v in variables(doc)
        ]
        for text in texts:
            used = set(re.findall(r"\$\{?(\w+)", text)) - {"1"}  # $1 in label_replace
            if used - defined:
                problems.append(f"{name}: {sorted(used - defined)} in {text}")

    assert not problems, "\n".join(problems)


def test_variable_queries_read_promql() -> None:
    for _, doc in committed().items():
        for v in variables(doc):
            if v.get("type") == "query":
                assert read(variable_promql(v["query"])).metrics, v


def overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return not (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_layout_ids_refids_and_datasource(name: str) -> None:
    doc: dict[str, Any] = committed()[name]
    all_panels = list(panels(doc))
    grid = [p["gridPos"] for p in all_panels]
    ids = [p["id"] for p in all_panels]

    assert len(set(ids)) == len(ids) and all(isinstance(i, int) and i > 0 for i in ids)
    assert all(g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["w"] > 0 and g["h"] > 0 for g in grid)
    assert not [
        (a, b) for i, a in enumerate(grid) for b in grid[i + 1:] if overlaps(a, b)
    ]  # fmt: skip
    assert variables(doc)[0] == {**variables(doc)[0], "name": "datasource", "type": "datasource",
                                 "query": "prometheus"}  # fmt: skip
    for panel in all_panels:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert len(set(refs)) == len(refs) and all(refs), panel["title"]
        assert all(t["datasource"] == panel["datasource"] for t in panel["targets"])


def test_node_detail_has_node_and_gpu_variables() -> None:
    names = [v["name"] for v in variables(committed()["node-detail.json"])]

    assert names == ["datasource", "node", "gpu"]
