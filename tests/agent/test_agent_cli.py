"""`gpufleet-agent` through typer's runner and as a real process: verdicts, exit codes, metrics."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.cli import app

runner = CliRunner()


def _check(*args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["check", "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def test_healthy_simulated_node_is_ok() -> None:
    code, out = _check("--simulate", "h100_sxm")
    assert code == 0
    assert out["verdict"] == "ok" and out["findings"] == []
    assert len(out["gpus"]) == 8


@pytest.mark.parametrize(
    ("fault", "code", "check", "gpu", "actions"),
    [
        ("ecc_dbe@gpu3", 2, "ecc_volatile_dbe", 3, {"reset_gpu", "drain"}),
        ("xid79@gpu1", 2, "gpu_lost", 1, {"reboot_node"}),
        ("thermal_slowdown@gpu2", 2, "temperature_slowdown", 2, {"drain"}),
        ("pcie_width@gpu4", 1, "pcie_width_degraded", 4, {"none", "drain", "reset_gpu", "service"}),
    ],
)
def test_fault_names_gpu_and_action(fault: str, code: int, check: str, gpu: int,
                                    actions: set[str]) -> None:
    exit_code, out = _check("--simulate", f"h100_sxm:fault={fault}")
    assert exit_code == code
    findings = {(f["check"], f["gpu"]): f for f in out["findings"]}
    assert (check, gpu) in findings, out["findings"]
    assert findings[(check, gpu)]["action"] in actions


def test_bad_simulation_spec_is_unknown_with_every_problem() -> None:
    result = runner.invoke(app, ["check", "--simulate", "h100_sxm:gpus=99,seed=x"])
    assert result.exit_code == 3
    assert "gpus" in result.output and "seed" in result.output


def test_bad_policy_is_unknown(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[node]\nexpected_gpus = -1\nbogus = 1\n")
    result = runner.invoke(app, ["check", "--simulate", "h100_sxm", "--policy", str(policy)])
    assert result.exit_code == 3
    assert "expected_gpus" in result.output and "bogus" in result.output


def test_window_counts_xids_that_arrive_during_it() -> None:
    code, out = _check("--simulate", "h100_sxm:fault=xid48@gpu5+1s", "--window", "1.5")
    assert code == 2
    assert any(f["check"] == "xid" and f["gpu"] == 5 for f in out["findings"])


def test_human_table_names_the_faulty_gpu() -> None:
    result = runner.invoke(app, ["check", "--simulate", "h100_sxm:fault=ecc_dbe@gpu3"])
    assert result.exit_code == 2
    assert "CRITICAL" in result.output and "ecc_volatile_dbe" in result.output


def test_daemon_serves_dcgm_and_gpufleet_metrics() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--simulate", "h100_sxm:fault=ecc_dbe@gpu3",
         "--metrics-listen", "127.0.0.1:0", "--interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://(127\.0\.0\.1:\d+)/metrics", line)
        assert match, line
        deadline = time.monotonic() + 20
        body = ""
        while time.monotonic() < deadline and "gpufleet_findings{" not in body:
            body = urllib.request.urlopen(f"http://{match.group(1)}/metrics", timeout=5).read().decode()
            time.sleep(0.2)
        temp = [line for line in body.splitlines() if line.startswith("DCGM_FI_DEV_GPU_TEMP{")]
        assert len(temp) == 8
        for label in ("gpu=", "UUID=", "pci_bus_id=", "device=", "modelName=", "hostname="):
            assert label in temp[0]
        assert 'gpufleet_findings{check="ecc_volatile_dbe",gpu="3",severity="critical"}' in body
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_run_refuses_insecure_remote_controller() -> None:
    result = runner.invoke(app, ["run", "--simulate", "h100_sxm", "--controller",
                                 "10.0.0.1:50051", "--insecure"])
    assert result.exit_code == 2
    assert "refused for a non-loopback controller" in result.output


# ---------------------------------------------------------------- through the real NVML code path


@pytest.fixture(autouse=True)
def _host_load_is_not_under_test(busy_host_policy: Path) -> None:
    """The real host reader runs in the faked-NVML checks below: see busy_host_policy."""


def _nvml_check(fake: object) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["check", "--json"], obj={"nvml": fake})
    return result.exit_code, json.loads(result.stdout)


def test_faked_healthy_h100_node_is_ok() -> None:
    from tests.fakes.nvml_profiles import h100_node

    code, out = _nvml_check(h100_node(8))
    assert (code, out["verdict"]) == (0, "ok"), out["findings"]
    assert [g["name"] for g in out["gpus"]] == ["NVIDIA H100 80GB HBM3"] * 8


def test_faked_volatile_dbe_is_critical_on_that_gpu() -> None:
    import pynvml

    from tests.fakes.nvml_profiles import h100_node

    fake = h100_node(8)
    fake.gpus[5].ecc[(pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC)] = 2
    code, out = _nvml_check(fake)
    assert code == 2 and out["verdict"] == "critical"
    (dbe,) = [f for f in out["findings"] if f["check"] == "ecc_volatile_dbe"]
    assert dbe["gpu"] == 5 and dbe["action"] in ("reset_gpu", "drain")
    assert dbe["evidence"]["ecc_dbe_volatile"] == 2


def test_faked_gpu_is_lost_is_critical_reboot() -> None:
    from tests.fakes.nvml_profiles import h100_node

    fake = h100_node(8)
    fake.gpus[2].lost = True
    code, out = _nvml_check(fake)
    assert code == 2 and out["action"] == "reboot_node"
    lost = [f for f in out["findings"] if f["gpu"] == 2]
    assert lost and lost[0]["severity"] == "critical" and lost[0]["action"] == "reboot_node"


def test_faked_not_supported_counters_raise_no_warning() -> None:
    from tests.fakes.nvml_profiles import h100_node

    fake = h100_node(8)
    for gpu in fake.gpus:
        gpu.unsupported |= {"nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetRemappedRows",
                            "nvmlDeviceGetPcieReplayCounter", "nvmlDeviceGetViolationStatus",
                            "nvmlDeviceGetGpuFabricInfoV", "nvmlDeviceGetNvLinkErrorCounter"}
    code, out = _nvml_check(fake)
    assert (code, out["verdict"], out["findings"]) == (0, "ok", [])
    assert "ecc_dbe_volatile" in out["gpus"][0]["not_supported"]


def test_faked_nvml_error_on_a_counter_is_unknown_not_a_crash() -> None:
    import pynvml

    from tests.fakes.nvml_profiles import h100_node

    fake = h100_node(8)
    fake.gpus[1].errors["nvmlDeviceGetRemappedRows"] = pynvml.NVML_ERROR_UNKNOWN
    code, out = _nvml_check(fake)
    assert code == 3 and out["verdict"] == "unknown"
    assert {f["gpu"] for f in out["findings"]} == {1}


def test_faked_gb300_nvlink5_recovery_failure_is_critical() -> None:
    import pynvml

    from tests.fakes.nvml_profiles import gb300_node

    fake = gb300_node(4)
    fake.gpus[0].set_field(pynvml.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_FAILED_EVENTS, 3, scope=0)
    code, out = _nvml_check(fake)
    assert code == 2
    assert any(f["check"] == "nvlink5_recovery_failed" and f["gpu"] == 0 for f in out["findings"])
