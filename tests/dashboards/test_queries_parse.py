"""A real Prometheus parses and evaluates every dashboard query, variable query and alert
expression (against an empty database: this checks the language, not the data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.alerts import ALERTS
from tests.dashboards.docs import committed, substitute, targets, variable_promql, variables
from tests.dashboards.prom import ApiError, api, prometheus


def all_expressions() -> list[tuple[str, str]]:
    out = []
    for name, doc in committed().items():
        out += [(f"{name}: {t.panel} {t.ref_id}", t.expr) for t in targets(name, doc)]
        out += [(f"{name}: variable {v['name']}", variable_promql(v["query"]))
                for v in variables(doc) if v.get("type") == "query"]  # fmt: skip
    out += [(f"alert {a.name}", a.expr) for a in ALERTS]
    return out


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = all_expressions()
    with prometheus(tmp_path, "global: {evaluation_interval: 1s}\n") as base:
        with pytest.raises(ApiError) as broken:  # the check can fail: a range vector to rate()
            api(base, "/api/v1/query", query="rate((up or up)[1m])")
        rejected = []
        for where, expr in exprs:
            try:
                api(base, "/api/v1/query", query=substitute(expr))
            except ApiError as err:
                rejected.append(f"{where}: {err}\n    {expr}")

    assert broken.value.error_type == "bad_data"
    assert len(exprs) > 100
    assert not rejected, "\n".join(rejected)
