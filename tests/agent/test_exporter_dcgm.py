"""Compatibility with dcgm-exporter: the stock Grafana dashboard's queries and default CSV, and
promtool's linter over a full exposition scraped over HTTP.

The reference data lives outside the repository, in `shared/data/dcgm-exporter/` beside the
checkout (`<repo>/../shared`); the tests that need it skip when it is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.exporter import METRIC_NAMES, serve_metrics
from tests.agent.test_exporter import Exporter, rich_report

REPO = Path(__file__).resolve().parents[2]
DCGM_DATA = REPO.parent / "shared" / "data" / "dcgm-exporter"
DASHBOARD = DCGM_DATA / "dcgm-exporter-dashboard.json"
COUNTERS_CSV = DCGM_DATA / "default-counters.csv"
ADDED_BY_PROMETHEUS = {"instance", "job", "__name__"}
# In dcgm-exporter's default CSV but not readable through NVML (see agent/exporter/dcgm.py).
NOT_FROM_NVML = {
    "DCGM_FI_DEV_ENC_UTIL",
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
}
# Off by default in dcgm-exporter; gpufleet turns these health counters on.
HEALTH_COUNTERS = {
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "DCGM_FI_DEV_RETIRED_SBE", "DCGM_FI_DEV_RETIRED_DBE", "DCGM_FI_DEV_RETIRED_PENDING",
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "DCGM_FI_DEV_POWER_VIOLATION", "DCGM_FI_DEV_THERMAL_VIOLATION",
}  # fmt: skip


def need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"dcgm-exporter reference data not found: expected {path.name} in "
                    "shared/data/dcgm-exporter/ beside the repository")  # fmt: skip
    return path


# --- a small PromQL reader: metric names and the labels a query filters or groups on ---------

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*([A-Za-z_]\w*)\s*\)")
_IDENT = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_LEGEND = re.compile(r"\{\{\s*([A-Za-z_]\w*)\s*\}\}")


@dataclass
class Query:
    """One query of the dashboard: metrics it reads and labels they must carry."""

    text: str
    metrics: set[str] = field(default_factory=set)
    labels: set[str] = field(default_factory=set)


def parse_query(text: str, legend: str = "") -> Query:
    """Metric names and needed labels of a PromQL expression or Grafana label_values() call."""
    q = Query(text)
    for metric, label in _LABEL_VALUES.findall(text):
        q.metrics.add(metric)
        q.labels.add(label)
    rest = _LABEL_VALUES.sub(" ", text)
    for metric, matchers in _SELECTOR.findall(rest):
        if metric:
            q.metrics.add(metric)
        q.labels.update(_MATCHER.findall(matchers))
    rest = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", rest)
    for group in _GROUPING.findall(rest):
        q.labels.update(x.strip() for x in group.split(",") if x.strip())
    rest = _GROUPING.sub(" ", rest)
    rest = re.sub(r'"[^"]*"|\$\w+|\[[^\]]*\]', " ", rest)
    q.metrics.update(m for m in _IDENT.findall(rest) if m.lower() not in _KEYWORDS)
    q.labels.update(_LEGEND.findall(legend))
    q.labels -= ADDED_BY_PROMETHEUS
    return q


def dashboard_queries(doc: object) -> Iterator[Query]:
    """Every target expression and templating query of a Grafana dashboard JSON."""
    if isinstance(doc, dict):
        if isinstance(doc.get("expr"), str):
            yield parse_query(doc["expr"], str(doc.get("legendFormat") or ""))
        for key in ("query", "definition"):
            value = doc.get(key)
            if isinstance(value, dict):
                value = value.get("query")
            if isinstance(value, str) and "label_values" in value:
                yield parse_query(value)
        for value in doc.values():
            yield from dashboard_queries(value)
    elif isinstance(doc, list):
        for item in doc:
            yield from dashboard_queries(item)


@pytest.mark.parametrize(
    ("text", "legend", "metrics", "labels"),
    [
        ('DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"}', "GPU {{gpu}}",
         {"DCGM_FI_DEV_GPU_TEMP"}, {"gpu"}),
        ('sum by (Hostname, modelName) (DCGM_FI_DEV_POWER_USAGE{gpu!="7"}) * 1000000', "",
         {"DCGM_FI_DEV_POWER_USAGE"}, {"Hostname", "modelName", "gpu"}),
        ("label_values(DCGM_FI_DEV_GPU_TEMP, gpu)", "", {"DCGM_FI_DEV_GPU_TEMP"}, {"gpu"}),
        ("rate(DCGM_FI_DEV_PCIE_REPLAY_COUNTER[5m]) > on(UUID) DCGM_FI_DEV_XID_ERRORS", "",
         {"DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_XID_ERRORS"}, {"UUID"}),
    ],
)  # fmt: skip
def test_query_reader(text: str, legend: str, metrics: set[str], labels: set[str]) -> None:
    q = parse_query(text, legend)

    assert (q.metrics, q.labels) == (metrics, labels)


# --- the compatibility checks ------------------------------------------------------------------


@pytest.fixture(scope="module")
def scraped() -> str:
    """The exposition of a rich 9-GPU report, fetched over HTTP from a real endpoint."""
    exp = Exporter().publish(rich_report())
    with serve_metrics(exp.registry, "127.0.0.1", 0)[0] as server:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text: str = response.read().decode()
    return text


def series_labels(text: str) -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(dict(sample.labels))
    return out


def test_every_dashboard_query_finds_its_metric_and_labels(scraped: str) -> None:
    queries = list(dashboard_queries(json.loads(need(DASHBOARD).read_text())))
    exposed = series_labels(scraped)
    checked: set[str] = set()
    problems = []
    for q in queries:
        for metric in q.metrics:
            if metric.startswith("DCGM_FI_PROF_"):
                continue  # profiling fields need DCGM, not NVML (agent/exporter/dcgm.py)
            checked.add(metric)
            if metric not in exposed:
                problems.append(f"{metric} not exported (query: {q.text})")
                continue
            for label in sorted(q.labels):
                if not all(s.get(label) for s in exposed[metric]):
                    problems.append(f"{metric} lacks label {label} (query: {q.text})")

    assert not problems, "\n".join(problems)
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"} <= checked  # fmt: skip
    assert any("gpu" in q.labels for q in queries)


def test_both_hostname_spellings_and_the_driver_label_are_on_every_gpu_series(
    scraped: str,
) -> None:
    for name, series in series_labels(scraped).items():
        if name.startswith("DCGM_FI_"):
            for labels in series:
                assert labels["Hostname"] == labels["hostname"] != "", name
                assert labels["DCGM_FI_DRIVER_VERSION"], name
                assert labels["device"].startswith("nvidia"), name


def csv_fields() -> dict[str, bool]:
    """dcgm-exporter's CSV: field name -> on by default (uncommented)."""
    fields: dict[str, bool] = {}
    for line in need(COUNTERS_CSV).read_text().splitlines():
        enabled = not line.lstrip().startswith("#")
        body = line.lstrip().lstrip("#").strip()
        parts = [p.strip() for p in body.split(",")]
        if len(parts) >= 3 and re.fullmatch(r"DCGM_\w+", parts[0]):
            fields[parts[0]] = enabled
    return fields


def test_every_dcgm_name_we_emit_is_a_dcgm_exporter_field() -> None:
    known = csv_fields()

    ours = {n for n in METRIC_NAMES if n.startswith("DCGM_")}
    assert ours - set(known) == set()


def test_default_fields_readable_through_nvml_and_health_counters_are_exported() -> None:
    known = csv_fields()
    default_on = {
        name for name, on in known.items()
        if on and not name.startswith("DCGM_FI_PROF_") and name != "DCGM_FI_DRIVER_VERSION"
    }  # fmt: skip

    assert default_on - NOT_FROM_NVML - set(METRIC_NAMES) == set()
    assert set(METRIC_NAMES) >= HEALTH_COUNTERS
    assert all(not known[name] for name in HEALTH_COUNTERS)  # really off in dcgm-exporter


# promtool lints the names dcgm-exporter chose (camelCase labels such as modelName, "counter"
# inside DCGM_FI_DEV_PCIE_REPLAY_COUNTER); those are the compatibility contract. Nothing else
# may be flagged, and nothing at all on gpufleet_* families.
DCGM_CONTRACT_LINTS = (
    "label names should be written in 'snake_case' not 'camelCase'",
    "metric name should not include type 'counter'",
)


def test_promtool_accepts_the_exposition(scraped: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not on PATH (apt-get install prometheus)")

    run = subprocess.run(
        [promtool, "check", "metrics"], input=scraped, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip

    lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    unexpected = [
        ln for ln in lines
        if not (ln.startswith("DCGM_FI_") and ln.endswith(DCGM_CONTRACT_LINTS))
    ]  # fmt: skip
    assert not unexpected, "\n".join(unexpected)
    assert run.returncode in (0, 3), run.returncode  # 3 = lint findings only, all allowed above
