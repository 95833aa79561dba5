"""A thin layer over grafana-foundation-sdk: layout, panel ids, query refIds, a few panel kinds.

The SDK builds the Grafana 11.6 dashboard model (schemaVersion 41). What this module adds,
because the SDK leaves it to the caller: every panel gets a unique id and an explicit gridPos
on the 24-column grid (the SDK's automatic placement can run past column 24), every query a
refId (A, B, ...), and every query the `${datasource}` variable. `Board.build()` returns plain
JSON data with keys sorted, so the committed files diff cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.common import ReduceDataOptions, StackingConfig
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    BigValueTextMode,
    StackingMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

GRID_COLUMNS = 24
DATASOURCE_VAR = "datasource"
DS = model.DataSourceRef(type_val="prometheus", uid="${" + DATASOURCE_VAR + "}")
#: Query-variable keys the SDK emits that belong to interval variables only (and that
#: @grafana/schema's VariableModel type rejects).
_INTERVAL_ONLY_KEYS = ("auto", "auto_count", "auto_min")

Thresholds = Sequence[tuple[float | None, str]]
PanelBuilder = timeseries.Panel | stat.Panel | table.Panel | bargauge.Panel


@dataclass(frozen=True, slots=True)
class Q:
    """One PromQL query of a panel and its legend."""

    expr: str
    legend: str = ""


def _queries(qs: Sequence[Q], *, instant: bool, as_table: bool) -> list[Dataquery]:
    out = []
    for i, q in enumerate(qs):
        dq = Dataquery().expr(q.expr).ref_id(chr(ord("A") + i)).datasource(DS)
        if q.legend:
            dq = dq.legend_format(q.legend)
        if instant:
            dq = dq.instant()
        if as_table:
            dq = dq.format(PromQueryFormat.TABLE)
        out.append(dq)
    return out


def _thresholds(steps: Thresholds) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def timeseries_panel(
    title: str,
    description: str,
    qs: Sequence[Q],
    unit: str = "short",
    *,
    stacked: bool = False,
    min_value: float | None = None,
    max_value: float | None = None,
) -> PanelBuilder:
    """A time series graph."""
    p = timeseries.Panel().title(title).description(description).datasource(DS).unit(unit)
    p = p.targets(list(_queries(qs, instant=False, as_table=False)))
    if stacked:
        p = p.stacking(StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(30)
    if min_value is not None:
        p = p.min(min_value)
    if max_value is not None:
        p = p.max(max_value)
    return p


def stat_panel(
    title: str,
    description: str,
    qs: Sequence[Q],
    unit: str = "short",
    *,
    thresholds: Thresholds = ((None, "green"),),
    name_and_value: bool = False,
) -> PanelBuilder:
    """Big numbers, one per series, from instant queries."""
    p = stat.Panel().title(title).description(description).datasource(DS).unit(unit)
    p = p.targets(list(_queries(qs, instant=True, as_table=False)))
    p = p.thresholds(_thresholds(thresholds)).color_mode(BigValueColorMode.BACKGROUND)
    p = p.graph_mode(BigValueGraphMode.NONE)
    p = p.reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    p = p.text_mode(BigValueTextMode.VALUE_AND_NAME if name_and_value else BigValueTextMode.AUTO)
    return p


def table_panel(title: str, description: str, qs: Sequence[Q], unit: str = "short") -> PanelBuilder:
    """A table of instant-query results, one row per series, labels as columns (no time)."""
    p = table.Panel().title(title).description(description).datasource(DS).unit(unit)
    p = p.targets(list(_queries(qs, instant=True, as_table=True)))
    return p.with_transformation(
        model.DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True, "__name__": True}}
        )
    )


def bargauge_panel(
    title: str,
    description: str,
    qs: Sequence[Q],
    unit: str = "short",
    *,
    thresholds: Thresholds = ((None, "green"),),
) -> PanelBuilder:
    """Horizontal bars, one per series, from instant queries."""
    p = bargauge.Panel().title(title).description(description).datasource(DS).unit(unit)
    p = p.targets(list(_queries(qs, instant=True, as_table=False)))
    p = p.thresholds(_thresholds(thresholds)).orientation(VizOrientation.HORIZONTAL)
    p = p.display_mode(BarGaugeDisplayMode.GRADIENT)
    return p.reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    regex: str = "",
    multi: bool = True,
    include_all: bool = True,
) -> QueryVariable:
    """A variable whose values come from Prometheus (refreshed when the time range changes)."""
    v = QueryVariable(name).label(label).datasource(DS).query(query)
    v = v.refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(
        model.VariableSort.ALPHABETICAL_ASC
    )
    v = v.multi(multi).include_all(include_all)
    if include_all:
        v = v.all_value(".*")
    if regex:
        v = v.regex(regex)
    return v


class Board:
    """A dashboard being laid out left to right, top to bottom, in rows."""

    def __init__(self, title: str, uid: str, description: str, tags: Sequence[str]) -> None:
        self._dash = (
            Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["gpufleet", *tags])
            .refresh("30s")
            .time("now-6h", "now")
            .timezone("browser")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .with_variable(
                DatasourceVariable(DATASOURCE_VAR).label("Prometheus").type("prometheus")
            )
        )
        self._x = self._y = self._line_h = 0
        self._next_id = 1

    def variable(self, var: Builder[model.VariableModel]) -> Board:
        """Add a template variable (after the datasource variable, in call order)."""
        self._dash = self._dash.with_variable(var)
        return self

    def row(self, title: str) -> Board:
        """Start a new full-width row."""
        self._newline()
        pos = model.GridPos(h=1, w=GRID_COLUMNS, x=0, y=self._y)
        self._dash = self._dash.with_row(Row(title).id(self._take_id()).grid_pos(pos))
        self._y += 1
        return self

    def add(self, panel: PanelBuilder, width: int, height: int = 8) -> Board:
        """Place a panel `width` columns wide; it wraps to the next line when it does not fit."""
        if not 1 <= width <= GRID_COLUMNS:
            raise ValueError(f"panel width {width} outside 1..{GRID_COLUMNS}")
        if self._x + width > GRID_COLUMNS:
            self._newline()
        pos = model.GridPos(h=height, w=width, x=self._x, y=self._y)
        self._dash = self._dash.with_panel(panel.id(self._take_id()).grid_pos(pos))
        self._x += width
        self._line_h = max(self._line_h, height)
        return self

    def build(self) -> dict[str, Any]:
        """The dashboard as JSON data (what Grafana imports)."""
        doc: dict[str, Any] = json.loads(json.dumps(self._dash.build(), cls=JSONEncoder))
        for var in doc.get("templating", {}).get("list", []):
            if var.get("type") != "interval":
                for key in _INTERVAL_ONLY_KEYS:
                    var.pop(key, None)
        return doc

    def _newline(self) -> None:
        if self._x:
            self._y += self._line_h
        self._x = self._line_h = 0

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1


def dump(doc: dict[str, Any]) -> str:
    """Canonical text of a dashboard file: sorted keys, two-space indent, final newline."""
    return json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
