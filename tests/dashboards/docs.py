"""Read the committed dashboards: panels, their queries, and the template variables."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO / "dashboards" / "json"
STOCK_DASHBOARD = REPO / "dashboards" / "upstream" / "dcgm-exporter-dashboard.json"
_INTERVALS = {"$__rate_interval": "1m", "$__interval": "30s", "$__range": "1h"}
_VARIABLE = re.compile(r"\$\{\w+(?::\w+)?\}|\$\w+|\[\[\w+\]\]")


@dataclass(frozen=True, slots=True)
class Target:
    """One query of one panel."""

    dashboard: str
    panel: str
    expr: str
    legend: str
    ref_id: str


def load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def committed() -> dict[str, dict[str, Any]]:
    """Every generated dashboard on disk, by file name."""
    return {p.name: load(p) for p in sorted(DASHBOARD_DIR.glob("*.json"))}


def panels(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in doc.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def targets(name: str, doc: dict[str, Any]) -> Iterator[Target]:
    for panel in panels(doc):
        for t in panel.get("targets", []):
            yield Target(name, str(panel.get("title")), t["expr"], t.get("legendFormat", ""),
                         t.get("refId", ""))  # fmt: skip


def variables(doc: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = doc.get("templating", {}).get("list", [])
    return out


def variable_promql(query: str) -> str:
    """The PromQL inside a Grafana variable query (query_result(...), label_values(X, l))."""
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", query, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query, re.S)
    if m:
        return m.group(1)
    raise ValueError(f"not a PromQL-backed variable query: {query!r}")


def substitute(expr: str) -> str:
    """What Grafana sends: intervals filled in, every other variable as `.*` (All)."""
    for var, value in _INTERVALS.items():
        expr = expr.replace(var, value)
    return _VARIABLE.sub(".*", expr)
