"""A real Prometheus scrapes the agent's endpoint and answers the stock dcgm-exporter dashboard's
queries. Skips without the `prometheus` binary (apt-get install prometheus)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.exporter import serve_metrics
from tests.agent.test_exporter import HOST, Exporter, rich_report
from tests.agent.test_exporter_dcgm import DASHBOARD, dashboard_queries, need

pytestmark = pytest.mark.slow
DEADLINE_S = 30.0  # Prometheus waits ~5 s before its first scrape of static targets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read().decode())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus on loopback scraping a 9-GPU report every second; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not on PATH (apt-get install prometheus)")
    exp = Exporter().publish(rich_report())
    server, port = serve_metrics(exp.registry, "127.0.0.1", 0)
    workdir: Path = tmp_path_factory.mktemp("prometheus")
    (workdir / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: gpufleet-agent\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    web = free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}",
         f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not api_ready(base, "DCGM_FI_DEV_GPU_TEMP"):
            assert proc.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "Prometheus never scraped the agent"
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        server.close()


def api_ready(base: str, query: str) -> bool:
    try:
        return bool(api(base, "/api/v1/query", query=query)["result"])
    except OSError:
        return False


def test_dashboard_queries_return_every_gpu(prometheus: str) -> None:
    doc = json.loads(need(DASHBOARD).read_text())
    exprs = {q.text for q in dashboard_queries(doc) if "label_values" not in q.text}
    empty = []
    for expr in sorted(exprs):
        if "DCGM_FI_PROF_" in expr:
            continue  # not available from NVML
        promql = expr.replace("$instance", ".*").replace("$gpu", ".*")
        result = api(prometheus, "/api/v1/query", query=promql)["result"]
        expected = 1 if promql.startswith(("avg(", "sum(")) else 9
        if len(result) != expected:
            empty.append(f"{promql}: {len(result)} series, expected {expected}")
    assert not empty, "\n".join(empty)


def test_dashboard_variables_resolve(prometheus: str) -> None:
    gpus = api(prometheus, "/api/v1/label/gpu/values", **{"match[]": "DCGM_FI_DEV_GPU_TEMP"})
    instances = api(
        prometheus, "/api/v1/label/instance/values", **{"match[]": "DCGM_FI_DEV_GPU_TEMP"}
    )

    assert sorted(gpus, key=int) == [str(i) for i in range(9)]
    assert len(instances) == 1


def test_both_hostname_spellings_select_the_same_series(prometheus: str) -> None:
    old = api(
        prometheus, "/api/v1/query", query=f'count(DCGM_FI_DEV_GPU_TEMP{{Hostname="{HOST}"}})'
    )
    new = api(
        prometheus, "/api/v1/query", query=f'count(DCGM_FI_DEV_GPU_TEMP{{hostname="{HOST}"}})'
    )

    assert old["result"][0]["value"][1] == new["result"][0]["value"][1] == "9"


def test_gpufleet_counters_and_verdict_are_queryable(prometheus: str) -> None:
    verdict = api(prometheus, "/api/v1/query", query="gpufleet_node_verdict == 1")["result"]
    xids = api(prometheus, "/api/v1/query", query='gpufleet_xid_events_total{xid="79"}')["result"]

    assert [r["metric"]["verdict"] for r in verdict] == ["critical"]
    assert [r["value"][1] for r in xids] == ["1"]
