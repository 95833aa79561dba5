"""The alert rules: promtool accepts the rule file and the example Prometheus config, and
promtool's unit tests (rule_cases.py) show each alert firing when it should, with its labels
and rendered annotations, and staying quiet when it should not. Skips without promtool
(apt-get install prometheus; CI installs it)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from dashboards.alerts import ALERTS
from dashboards.build import RULES_FILE
from dashboards.metrics_contract import PROMETHEUS_SERIES, lookup
from dashboards.promql import read
from tests.dashboards.docs import REPO
from tests.dashboards.prom import need_binary
from tests.dashboards.rule_cases import CASES, Case, Check, Fires, promtool_tests

RULES = REPO / RULES_FILE
PROMETHEUS_YML = REPO / "deploy" / "prometheus" / "prometheus.yml"


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([need_binary("promtool"), *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)  # fmt: skip


def test_promtool_checks_the_rule_file() -> None:
    result = promtool("check", "rules", str(RULES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


def test_promtool_checks_the_example_config_and_its_rule_file() -> None:
    result = promtool("check", "config", PROMETHEUS_YML.name, cwd=PROMETHEUS_YML.parent)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def run_cases(tmp_path: Path, cases: tuple[Case, ...]) -> subprocess.CompletedProcess[str]:
    test_file = tmp_path / "gpufleet-rules.test.yml"
    test_file.write_text(json.dumps(promtool_tests(str(RULES), cases), indent=1))
    return promtool("test", "rules", str(test_file))


def test_every_alert_fires_when_it_should_and_stays_quiet_when_it_should_not(
    tmp_path: Path,
) -> None:
    result = run_cases(tmp_path, CASES)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_cases_cover_every_alert_both_ways() -> None:
    checks = [c for case in CASES for c in case.checks]
    fires = {c.alert for c in checks if c.fires}
    quiet = {c.alert for c in checks if not c.fires}

    assert fires == quiet == {a.name for a in ALERTS}


def test_promtool_fails_a_wrong_expectation(tmp_path: Path) -> None:
    early = Case(CASES[0].title, CASES[0].series, [
        Check("1m", "GpufleetNodeCritical",
              [Fires({"job": "gpufleet-agent", "instance": "n1:9400", "hostname": "n1"})]),
    ])  # fmt: skip

    result = run_cases(tmp_path, (early,))

    assert result.returncode != 0
    assert "GpufleetNodeCritical" in result.stdout + result.stderr


def test_rules_read_only_contract_metrics() -> None:
    unknown = {
        (a.name, m)
        for a in ALERTS
        for m in read(a.expr).metrics
        if m not in PROMETHEUS_SERIES and lookup(m) is None
    }

    assert not unknown


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: a.name)
def test_every_alert_is_documented_and_has_a_severity(alert: object) -> None:
    from dashboards.alerts import Alert

    assert isinstance(alert, Alert)
    assert alert.severity in {"critical", "warning"}
    assert alert.summary and alert.description and alert.runbook
    assert alert.name.startswith("Gpufleet")
    assert alert.for_.endswith(("s", "m"))
