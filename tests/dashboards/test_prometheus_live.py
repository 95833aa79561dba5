"""End to end with real parts: a real Prometheus scrapes a simulated `gpufleet-agent run` (a
GPU with a double-bit ECC error and a GPU fallen off the bus) and a real `gpufleet-controller
serve`, loads the committed alert rules, and must show dcgm-exporter-labelled telemetry,
gpufleet findings, controller state, and the alerts for the injected faults; the dashboards'
queries then run against that data. Everything binds 127.0.0.1 and is stopped by PID.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dashboards.build import RULES_FILE
from dashboards.metrics_contract import Status, lookup
from dashboards.promql import read
from tests.dashboards.docs import REPO, committed, substitute, targets
from tests.dashboards.prom import api, need_binary, prometheus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

# Faults 3 s into the run, after the agent's first sweep and its Hello to the controller.
# (Faults present at start-up would not show their XIDs while a controller is configured:
# the Hello's identity sweep drains them; reported to the agent's owner.)
SPEC = "h100_sxm:fault=ecc_dbe@gpu3+3s,fault=xid79@gpu1+3s"
NODE = "h100-n000"  # the simulated node's name and hostname
START_TIMEOUT_S = 20.0
DATA_TIMEOUT_S = 25.0  # Prometheus' first scrape comes ~6 s after it starts
T = TypeVar("T")


def console_script(name: str, module: str) -> list[str]:
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.is_file() else [sys.executable, "-m", module]


@dataclass
class Proc:
    """A started process whose stdout/stderr go to files (a pipe could fill and block it)."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    def wait_for(self, pattern: str, timeout_s: float = START_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while True:
            m = re.search(pattern, self.out.read_text(errors="replace"))
            if m:
                return m
            if self.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no {pattern!r} from {self.popen.args!r}:\n"
                            f"{self.out.read_text()[-1500:]}\n{self.err.read_text()[-1500:]}")  # fmt: skip
            time.sleep(0.05)

    def stop(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)


def start(argv: list[str], workdir: Path, name: str) -> Proc:
    out, err = workdir / f"{name}.out", workdir / f"{name}.err"
    with out.open("wb") as o, err.open("wb") as e:
        popen = subprocess.Popen(argv, stdout=o, stderr=e, cwd=workdir)
    return Proc(popen, out, err)


def controller_has_metrics(argv: list[str]) -> bool:
    """Whether `serve --help` offers --metrics-listen; a crashing CLI fails the test."""
    result = subprocess.run([*argv, "serve", "--help"], capture_output=True, text=True,
                            timeout=30)  # fmt: skip
    if result.returncode == 0:
        return "--metrics-listen" in result.stdout
    if "invalid choice" in result.stderr or "No such command" in result.stderr:
        return False  # no `serve` subcommand yet
    pytest.fail(f"{argv} serve --help failed:\n{result.stderr[-2000:]}")


@dataclass
class Stack:
    prometheus: str
    with_controller: bool


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    need_binary("prometheus")
    work = tmp_path_factory.mktemp("live")
    procs: list[Proc] = []
    try:
        controller_cmd = console_script("gpufleet-controller", "controller")
        jobs: dict[str, str] = {}
        agent_link: list[str] = []
        if controller_has_metrics(controller_cmd):
            ctl = start([*controller_cmd, "serve", "--listen", "127.0.0.1:0",
                         "--db", str(work / "fleet.db"), "--metrics-listen", "127.0.0.1:0",
                         "--insecure"], work, "controller")  # fmt: skip
            procs.append(ctl)
            grpc_addr = ctl.wait_for(r"listening on (\S+)").group(1)
            jobs["gpufleet-controller"] = ctl.wait_for(r"metrics on http://(\S+)/metrics").group(1)
            agent_link = ["--controller", grpc_addr, "--insecure"]
        agent = start([*console_script("gpufleet-agent", "agent"), "run", "--simulate", SPEC,
                       "--metrics-listen", "127.0.0.1:0", "--interval", "1",
                       "--spool", str(work / "spool"), "--state-dir", str(work / "state"),
                       *agent_link], work, "agent")  # fmt: skip
        procs.append(agent)
        jobs["gpufleet-agent"] = agent.wait_for(r"metrics on http://(\S+)/metrics").group(1)
        scrape = "".join(
            f"  - job_name: {job}\n    static_configs: [{{targets: ['{addr}']}}]\n"
            for job, addr in jobs.items()
        )
        config = (
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{REPO / RULES_FILE}']\n"
            f"scrape_configs:\n{scrape}"
        )
        with prometheus(work, config) as base:
            yield Stack(base, "gpufleet-controller" in jobs)
    finally:
        for proc in reversed(procs):
            proc.stop()


def poll(what: str, probe: Callable[[], T | None], timeout_s: float = DATA_TIMEOUT_S) -> T:
    """Call `probe` until it returns something other than None (or fail after timeout_s)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.25)


def query(base: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(base, "/api/v1/query", query=expr)["result"]
    return result


def nonempty(base: str, expr: str, n: int = 1) -> Callable[[], list[dict[str, Any]] | None]:
    def probe() -> list[dict[str, Any]] | None:
        result = query(base, expr)
        return result if len(result) >= n else None

    return probe


def test_gpu_telemetry_carries_dcgm_exporter_labels(stack: Stack) -> None:
    series = poll("DCGM_FI_DEV_GPU_TEMP", nonempty(stack.prometheus, "DCGM_FI_DEV_GPU_TEMP", 7))
    labels = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "hostname", "Hostname",
              "DCGM_FI_DRIVER_VERSION"}  # fmt: skip

    assert all(labels <= set(s["metric"]) for s in series), series[0]["metric"]
    assert {s["metric"]["hostname"] for s in series} == {NODE}
    assert {s["metric"]["job"] for s in series} == {"gpufleet-agent"}
    assert "1" not in {s["metric"]["gpu"] for s in series}  # the lost GPU has no reading


def test_findings_name_the_injected_faults(stack: Stack) -> None:
    crit = poll("critical findings", nonempty(
        stack.prometheus, 'gpufleet_findings{severity="critical"}', 2))  # fmt: skip

    assert {(s["metric"]["check"], s["metric"]["gpu"]) for s in crit} >= {
        ("ecc_volatile_dbe", "3"), ("gpu_lost", "1"),
    }  # fmt: skip


def alerts(base: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api(base, "/api/v1/alerts")["alerts"]
    return found


def test_alerts_for_the_injected_faults_go_pending_or_firing(stack: Stack) -> None:
    def probe() -> list[dict[str, Any]] | None:
        got = alerts(stack.prometheus)
        names = {a["labels"]["alertname"] for a in got}
        wanted = {"GpufleetFatalXid", "GpufleetGpuFallenOffBus", "GpufleetNodeCritical"}
        return got if wanted <= names else None

    got = poll("alerts", probe)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for a in got:
        by_name.setdefault(a["labels"]["alertname"], []).append(a)

    fatal = by_name["GpufleetFatalXid"]
    xids = {(a["labels"]["gpu"], a["labels"]["xid"], a["state"]) for a in fatal}
    assert ("1", "79", "firing") in xids  # for: 0s
    assert ("3", "48", "firing") in xids  # the simulator's DBE comes with its XID 48
    lost = by_name["GpufleetGpuFallenOffBus"]
    assert [(a["labels"]["gpu"], a["labels"]["hostname"]) for a in lost] == [("1", NODE)]
    assert lost[0]["state"] in {"pending", "firing"}
    assert lost[0]["annotations"]["summary"] == f"GPU 1 on {NODE} has fallen off the bus"
    assert "GpufleetAgentDown" not in by_name


def test_controller_state_and_its_alert(stack: Stack) -> None:
    if not stack.with_controller:
        pytest.skip(
            "gpufleet-controller serve has no --metrics-listen yet: controller part skipped"
        )
    drained = poll("the drained node", nonempty(
        stack.prometheus, 'gpufleet_nodes{state="drained"} == 1'))  # fmt: skip
    streams = poll("one agent stream", nonempty(stack.prometheus, "gpufleet_agent_streams == 1"))

    def fraction_alert() -> dict[str, Any] | None:
        return next((a for a in alerts(stack.prometheus)
                     if a["labels"]["alertname"] == "GpufleetDrainedFractionHigh"), None)  # fmt: skip

    alert = poll("GpufleetDrainedFractionHigh", fraction_alert)

    assert drained[0]["metric"]["job"] == "gpufleet-controller"
    assert streams
    assert alert["state"] == "pending"  # for: 15m
    assert alert["annotations"]["summary"] == "100% of the fleet is out of service"


def emitted_only(expr: str) -> bool:
    for metric in read(expr).metrics:
        family = lookup(metric)
        if family is not None and family.status is not Status.EMITTED:
            return False
    return True


def test_dashboard_queries_answer_from_live_data(stack: Stack) -> None:
    counters = ["DCGM_FI_DEV_POWER_VIOLATION", "gpufleet_xid_events_total"]
    if stack.with_controller:
        counters.append("gpufleet_ingest_messages_total")
    for counter in counters:
        poll(f"two samples of {counter}",
             nonempty(stack.prometheus, f"count_over_time({counter}[1m]) >= 2"))  # fmt: skip
    docs = committed()
    exprs = {
        (t.dashboard, t.panel, t.expr)
        for name in ("node-detail.json", "fleet-overview.json")
        for t in targets(name, docs[name])
        if emitted_only(t.expr)
    }
    empty = []
    for dashboard, panel, expr in sorted(exprs):
        promql = substitute(expr.replace("$node", NODE))
        if not query(stack.prometheus, promql):
            empty.append(f"{dashboard}: {panel}: {promql}")
    # Honest gaps: an H100 has no NVLink5 counters, row remapping replaced page retirement
    # (Ampere+), fabric status is only valid once registration completed (NVSwitch systems),
    # and a controller that rejected nothing has no rejected-stream series.
    allowed = re.compile(
        r"nvlink5|RETIRED_|fabric_status|rejected"
        + ("" if stack.with_controller else r"|gpufleet_nodes|ingest|agent_streams|directives")
    )
    unexpected = [e for e in empty if not allowed.search(e)]

    assert len(exprs) > 60
    assert not unexpected, "\n".join(unexpected)
