"""The systemd units in systemd/: their contract with the CLI (static checks) and
`systemd-analyze verify` / `security` where systemd-analyze is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_BIN = "/opt/gpufleet/bin/"
# Every GPUFLEET_* a unit may set: `gpufleet-agent run` / `gpufleet-controller serve` flags
# (design.md section 3) as GPUFLEET_<FLAG>.
KNOWN_VARIABLES = {
    "GPUFLEET_CONTROLLER", "GPUFLEET_NODE", "GPUFLEET_METRICS_LISTEN", "GPUFLEET_SPOOL",
    "GPUFLEET_SIMULATE", "GPUFLEET_POLICY", "GPUFLEET_TLS_CERT", "GPUFLEET_TLS_KEY",
    "GPUFLEET_TLS_CA", "GPUFLEET_INSECURE", "GPUFLEET_LISTEN", "GPUFLEET_DB",
    "GPUFLEET_STATE_DIR", "GPUFLEET_INTERVAL", "GPUFLEET_WORKDIR",
}  # fmt: skip
# systemd-analyze lines that come from the machine, not from our units.
HARMLESS = (
    re.compile(r"^System has not been booted with systemd as init system"),
    re.compile(r"^Special user nobody configured, this is not safe!"),
)

Unit = dict[str, list[tuple[str, str]]]


def parse(path: Path) -> Unit:
    """Sections -> (key, value) pairs in order (keys repeat in units, so no configparser)."""
    unit: Unit = {}
    section = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            unit.setdefault(section, [])
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: Unit, section: str, key: str) -> str:
    [value] = values(unit, section, key)
    return value


def unit_files() -> list[Path]:
    return sorted(p for p in UNITS.iterdir() if p.suffix in (".service", ".slice"))


def test_the_expected_units_are_shipped() -> None:
    names = {p.name for p in unit_files()}

    assert {"gpufleet-agent.service", "gpufleet-controller.service", "gpufleet.slice"} <= names
    assert (UNITS / "README.md").is_file()


@pytest.mark.parametrize(
    ("name", "command", "flags"),
    [
        ("gpufleet-agent.service", "gpufleet-agent run", ["--metrics-listen", "--spool"]),
        ("gpufleet-controller.service", "gpufleet-controller serve",
         ["--listen", "--db", "--metrics-listen"]),
    ],
)  # fmt: skip
def test_service_runs_the_installed_cli_with_its_flags(
    name: str, command: str, flags: list[str]
) -> None:
    unit = parse(UNITS / name)
    exec_start = one(unit, "Service", "ExecStart")

    assert exec_start.startswith(INSTALLED_BIN + command + " ")
    for flag in flags:
        assert re.search(rf"(^|\s){flag}\s+\S", exec_start), flag
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "Slice") == "gpufleet.slice"
    assert any("/etc/gpufleet/" in v for v in values(unit, "Service", "EnvironmentFile"))
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]


@pytest.mark.parametrize("name", ["gpufleet-agent.service", "gpufleet-controller.service"])
def test_every_variable_in_exec_start_has_a_default(name: str) -> None:
    """${VAR} of an unset variable would expand to nothing and shift the arguments."""
    unit = parse(UNITS / name)
    defaults = {
        assignment.split("=", 1)[0]
        for line in values(unit, "Service", "Environment")
        for assignment in line.split()
    }
    used = set(re.findall(r"\$\{(\w+)\}", one(unit, "Service", "ExecStart")))

    assert used and used <= defaults
    assert defaults <= KNOWN_VARIABLES, defaults - KNOWN_VARIABLES


def test_slices_referenced_by_units_are_shipped() -> None:
    shipped = {p.name for p in unit_files()}
    for path in unit_files():
        for slice_name in values(parse(path), "Service", "Slice"):
            assert slice_name in shipped, f"{path.name} uses {slice_name}"


def test_the_slice_bounds_cpu_and_memory() -> None:
    unit = parse(UNITS / "gpufleet.slice")

    assert re.fullmatch(r"\d+%", one(unit, "Slice", "CPUQuota"))
    assert re.fullmatch(r"\d+[KMG]", one(unit, "Slice", "MemoryMax"))


def test_agent_hardening_leaves_the_gpus_and_kernel_log_reachable() -> None:
    service = dict(parse(UNITS / "gpufleet-agent.service")["Service"])
    allowed = values(parse(UNITS / "gpufleet-agent.service"), "Service", "DeviceAllow")

    assert service.get("PrivateDevices", "no") == "no"  # would hide /dev/nvidia*
    assert service.get("ProtectKernelLogs", "no") == "no"  # would hide /dev/kmsg (XIDs)
    assert "MemoryDenyWriteExecute" not in service  # CUDA/torch generate code
    assert service["DevicePolicy"] == "closed"
    assert "char-nvidia* rw" in allowed
    assert "/dev/kmsg r" in allowed
    assert service["NoNewPrivileges"] == "yes"


# --- systemd-analyze -------------------------------------------------------------------------


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not on PATH (apt-get install systemd)")
    return found


def staged(tmp_path: Path) -> Path:
    """All units in a temp dir, with ExecStart pointing at an existing executable.

    `systemd-analyze verify` refuses a unit whose ExecStart binary is missing, and the install
    location (/opt/gpufleet/bin) does not exist on a build machine, so the binary path is
    replaced by `true`; everything else in the unit is verified exactly as shipped.
    """
    stand_in = shutil.which("true")
    assert stand_in is not None
    dest = tmp_path / "units"
    dest.mkdir()
    for path in unit_files():
        text = re.sub(re.escape(INSTALLED_BIN) + r"[\w-]+", stand_in, path.read_text())
        (dest / path.name).write_text(text)
    return dest


@pytest.mark.parametrize("name", [p.name for p in unit_files()])
def test_systemd_analyze_verify_is_silent(name: str, tmp_path: Path) -> None:
    tool = analyze()
    units = staged(tmp_path)

    run = subprocess.run(
        [tool, "verify", f"./{name}"], cwd=units, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip

    noise = [
        line for line in (run.stderr + run.stdout).splitlines()
        if line.strip() and not any(p.search(line) for p in HARMLESS)
    ]  # fmt: skip
    assert run.returncode == 0 and not noise, "\n".join(noise) or f"rc={run.returncode}"


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: an unknown key only warns (rc 0) but is caught as stderr."""
    tool = analyze()
    units = staged(tmp_path)
    path = units / "gpufleet-agent.service"
    path.write_text(path.read_text().replace("RestartSec=", "RestartSecs="))

    run = subprocess.run(
        [tool, "verify", "./gpufleet-agent.service"], cwd=units, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip

    assert "Unknown key 'RestartSecs'" in run.stderr


@pytest.mark.parametrize(
    ("name", "max_exposure"),
    [("gpufleet-controller.service", 2.0), ("gpufleet-agent.service", 7.0)],
)
def test_security_exposure_stays_within_bounds(
    name: str, max_exposure: float, tmp_path: Path
) -> None:
    """Offline exposure score (0 safe .. 10 unsafe): the controller is locked down; the agent
    keeps root and the GPU, RDMA and kernel-log devices, so it scores higher, but must not
    regress. --threshold takes the score times ten."""
    tool = analyze()
    units = staged(tmp_path)

    run = subprocess.run(
        [tool, "security", "--offline=true", f"--threshold={round(max_exposure * 10)}",
         "--no-pager", f"./{name}"],
        cwd=units, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    score = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", run.stdout)
    assert score is not None, run.stdout[-500:] + run.stderr
    assert float(score.group(1)) <= max_exposure
    assert run.returncode == 0, f"exposure {score.group(1)} above {max_exposure}"
