"""Looking back in the kernel log: the pure filter, the scanner's lookback mode, the findings,
`gpufleet-agent check --xid-lookback` end to end (fake NVML, a real log file), and the daemon's
sources still starting at the log's end."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.checks.xid import check_xid, check_xid_history, duration_text
from agent.cli import app
from agent.gpu.xid import KernelLogXidScanner
from agent.gpu.xid_parse import recent_kernel_xids
from agent.model import Action, Severity
from agent.node_setup import open_sources
from agent.policy import default_policy
from gpufleet_common.clock import FakeClock
from tests.agent.samples import healthy_node, with_xids, xid
from tests.fakes.nvml_profiles import h100_node

NOW = 1_700_050_000.0
BOOT = NOW - 86_400.0
BUSES = {"00000000:3B:00.0": 0, "00000000:3A:00.0": 2, "00000000:5D:00.0": 3}


def iso(t: float) -> str:
    """A `journalctl -k -o short-iso` stamp (local time, with offset)."""
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="microseconds")


def kmsg(t: float, text: str, seq: int = 1) -> str:
    """A /dev/kmsg record logged at wall time `t` on a node booted at BOOT."""
    return f"3,{seq},{round((t - BOOT) * 1e6)},-;{text}"


def log_lines(now: float) -> list[str]:
    """Old fatal (outside an hour), recent fatal, recent benign, undated, and junk."""
    return [
        f"{iso(now - 7200)} node01 kernel: NVRM: Xid (PCI:0000:3b:00): 48, pid=7, DBE",
        "garbage \x00\x01 line",
        f"{iso(now - 720)} node01 kernel: NVRM: Xid (PCI:0000:5d:00): 79, pid=1234, "
        "name=python3, GPU has fallen off the bus.",
        f"{iso(now - 300)} node01 kernel: NVRM: GPU at PCI:0000:5d:00: GPU-3f1a9c52",
        f"{iso(now - 300)} node01 kernel: NVRM: Xid (PCI:0000:3a:00): 63, row remap recorded",
        "NVRM: Xid (PCI:0000:3b:00): 95, no timestamp at all",
        "NVRM: Xid (PCI:zz): not a number",
    ]


# -- the pure filter -------------------------------------------------------------------------


def test_recent_keeps_the_window_and_counts_old_and_undated() -> None:
    history = recent_kernel_xids(log_lines(NOW), BUSES, now=NOW, lookback_s=3600,
                                 boot_time=None)
    assert [(e.xid, e.gpu, e.pci_bus_id) for e in history.recent] == [
        (79, 3, "0000:5d:00"), (63, 2, "0000:3a:00")]
    assert history.recent[0].timestamp == pytest.approx(NOW - 720, abs=1e-3)
    assert (history.older, history.undated, history.error) == (1, 1, "")


def test_kmsg_records_are_dated_from_boot_time_only() -> None:
    lines = [kmsg(NOW - 30, "NVRM: Xid (PCI:0000:5d:00): 79, GPU has fallen off the bus.", 1),
             kmsg(NOW - 5000, "NVRM: Xid (PCI:0000:5d:00): 13, old", 2)]
    dated = recent_kernel_xids(lines, BUSES, now=NOW, lookback_s=600, boot_time=BOOT)
    assert [(e.xid, e.gpu) for e in dated.recent] == [(79, 3)] and dated.older == 1
    assert dated.recent[0].timestamp == pytest.approx(NOW - 30, abs=1e-3)
    blind = recent_kernel_xids(lines, BUSES, now=NOW, lookback_s=600, boot_time=None)
    assert (blind.recent, blind.undated) == ((), 2)  # never guessed as "now"


def test_year_less_syslog_stamps_take_the_year_of_now() -> None:
    now = time.mktime((2025, 1, 1, 0, 10, 0, 0, 0, -1))
    lines = ["Dec 31 23:55:00 node01 kernel: NVRM: Xid (PCI:0000:3b:00): 79, late last year",
             "Jan  1 00:05:00 node01 kernel: NVRM: Xid (PCI:0000:3b:00): 48, this year"]
    history = recent_kernel_xids(lines, BUSES, now=now, lookback_s=3600, boot_time=None)
    assert [(e.xid, round(now - e.timestamp)) for e in history.recent] == [(79, 900), (48, 300)]


def test_negative_lookback_is_refused() -> None:
    with pytest.raises(ValueError, match="lookback_s"):
        recent_kernel_xids([], {}, now=NOW, lookback_s=-1, boot_time=None)
    with pytest.raises(ValueError, match="lookback_s"):
        KernelLogXidScanner(FakeClock(), "unused", lookback_s=-1)


# -- the scanner ----------------------------------------------------------------------------


def test_scanner_lookback_reports_the_window_once_then_only_new_lines(tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    log = tmp_path / "kern.log"
    log.write_text("\n".join(log_lines(NOW)) + "\n")
    scanner = KernelLogXidScanner(clock, str(log), lookback_s=3600)
    try:
        scanner.set_bus_map(BUSES)  # known only after the open, as in NvmlBackend
        assert [(e.xid, e.gpu) for e in scanner.poll()] == [(79, 3), (63, 2)]
        assert scanner.history is not None
        assert (scanner.history.older, scanner.history.undated) == (1, 1)
        assert scanner.poll() == []  # the history is reported once
        with log.open("a") as f:
            f.write(f"{iso(NOW)} node01 kernel: NVRM: Xid (PCI:0000:3b:00): 94, contained\n")
        assert [e.xid for e in scanner.poll()] == [94]
    finally:
        scanner.close()


def test_scanner_without_lookback_still_starts_at_the_end(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("\n".join(log_lines(NOW)) + "\n")
    scanner = KernelLogXidScanner(FakeClock(NOW), str(log), BUSES)
    try:
        assert scanner.poll() == [] and scanner.history is None
    finally:
        scanner.close()


def test_scanner_reads_kmsg_records_with_a_given_boot_time(tmp_path: Path) -> None:
    log = tmp_path / "kmsg.log"
    log.write_text(kmsg(NOW - 720, "NVRM: Xid (PCI:0000:5d:00): 95, Uncontained: FBHUB") + "\n")
    scanner = KernelLogXidScanner(FakeClock(NOW), str(log), BUSES, lookback_s=900,
                                  boot_time=BOOT)
    try:
        [event] = scanner.poll()
        assert (event.xid, event.gpu) == (95, 3)
        assert event.timestamp == pytest.approx(NOW - 720, abs=1e-3)
    finally:
        scanner.close()


def test_scanner_history_cap_drops_the_fragment_it_starts_in(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    first = f"{iso(NOW - 60)} k: NVRM: Xid (PCI:0000:3b:00): 48, first\n"
    second = f"{iso(NOW - 30)} k: NVRM: Xid (PCI:0000:3b:00): 13, second\n"
    log.write_text(first + second)
    cap = len(second) + len(first) - first.index("NVRM:")  # starts at "NVRM: Xid ... 48"
    scanner = KernelLogXidScanner(FakeClock(NOW), str(log), lookback_s=3600,
                                  max_history_bytes=cap)
    try:
        assert [e.xid for e in scanner.poll()] == [13]
        assert scanner.history is not None and scanner.history.undated == 0
    finally:
        scanner.close()


@pytest.mark.parametrize("name", ["missing.log", "."])
def test_scanner_unreadable_log_is_a_history_error_not_a_crash(tmp_path: Path,
                                                               name: str) -> None:
    scanner = KernelLogXidScanner(FakeClock(NOW), str(tmp_path / name), lookback_s=3600)
    try:
        assert scanner.poll() == []
        assert scanner.history is not None and scanner.history.recent == ()
        assert str(tmp_path) in scanner.history.error and scanner.errors == 1
    finally:
        scanner.close()


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="no readable /dev/kmsg")
def test_scanner_looks_back_over_the_real_ring_buffer() -> None:
    scanner = KernelLogXidScanner(FakeClock(time.time()), lookback_s=3600)
    try:
        events = scanner.poll()
        assert scanner.history is not None and scanner.history.error == ""
        assert all(e.source == "kmsg" for e in events)
        assert scanner.available and scanner.errors == 0
    finally:
        scanner.close()


# -- the findings ----------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [(45, "45 s"), (720, "12 min"),
                                               (7199, "119 min"), (5.5 * 3600, "5.5 h"),
                                               (3 * 86400, "3.0 days")])
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_an_old_xid_says_how_long_ago_with_bus_and_action() -> None:
    sample = healthy_node(timestamp=NOW)
    old = xid(79, gpu=3, timestamp=NOW - 720, pci_bus_id="0000:5d:00", source="kmsg")
    [found] = check_xid(with_xids(sample, old), None, default_policy())
    assert found.message.startswith(
        "GPU 3 (0000:5d:00): XID 79 GPU_HAS_FALLEN_OFF_THE_BUS, 12 min ago: the GPU fell off")
    assert (found.severity, found.action) == (Severity.CRITICAL, Action.REBOOT_NODE)
    assert found.evidence["age_s"] == 720.0
    fresh = xid(79, gpu=3, timestamp=NOW - 5, pci_bus_id="0000:5d:00")
    [now_found] = check_xid(with_xids(sample, fresh), None, default_policy())
    assert " ago" not in now_found.message and "age_s" not in now_found.evidence


def test_repeated_old_xids_say_when_the_last_was() -> None:
    sample = with_xids(healthy_node(timestamp=NOW), xid(48, gpu=1, timestamp=NOW - 3000),
                       xid(48, gpu=1, timestamp=NOW - 900))
    [found] = check_xid(sample, None, default_policy())
    assert "XID 48 GPU_ECC_DBE (2 times), last 15 min ago:" in found.message


def test_history_notes_are_informational() -> None:
    assert check_xid_history(3600, "", 0) == []
    unreadable, undated = check_xid_history(3600, "/dev/kmsg: Operation not permitted", 2)
    assert unreadable.severity is undated.severity is Severity.OK
    assert "could not be read (/dev/kmsg: Operation not permitted)" in unreadable.message
    assert "60 min" in unreadable.message and unreadable.action is Action.NONE
    assert undated.message.startswith("2 XID line(s)") and undated.evidence["undated"] == 2


# -- gpufleet-agent check --------------------------------------------------------------------

runner = CliRunner()


def _check(log: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = runner.invoke(app, ["check", "--json", "--kernel-log", str(log), *args],
                           obj={"nvml": h100_node(8)})
    assert result.stdout.startswith("{"), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def kernel_log(tmp_path: Path, busy_host_policy: Path) -> Path:
    """A kernel log with XIDs (the checks reading it see this machine's real host: see
    busy_host_policy)."""
    log = tmp_path / "kern.log"
    log.write_text("\n".join(log_lines(time.time())) + "\n")
    return log


def test_check_reports_a_recent_fatal_xid_with_its_age(kernel_log: Path) -> None:
    code, out = _check(kernel_log)
    assert (code, out["verdict"], out["action"]) == (2, "critical", "reboot_node")
    assert out["xid_lookback_s"] == 3600
    xids = {f["evidence"]["xid"]: f for f in out["findings"] if f["check"] == "xid"}
    assert set(xids) == {79, 63}  # the 2 h old XID 48 is outside the hour
    fatal = xids[79]
    assert (fatal["gpu"], fatal["severity"], fatal["action"]) == (3, "critical", "reboot_node")
    assert fatal["message"].startswith(
        "GPU 3 (0000:5d:00): XID 79 GPU_HAS_FALLEN_OFF_THE_BUS, 12 min ago:")
    assert (xids[63]["gpu"], xids[63]["severity"]) == (2, "ok")
    [note] = [f for f in out["findings"] if f["check"] == "kernel_log"]
    assert note["severity"] == "ok" and note["evidence"]["undated"] == 1


def test_check_lookback_shorter_than_the_xid_age_or_off(kernel_log: Path) -> None:
    code, out = _check(kernel_log, "--xid-lookback", "600")
    assert code == 0 and [f["evidence"]["xid"] for f in out["findings"]
                          if f["check"] == "xid"] == [63]
    code, out = _check(kernel_log, "--xid-lookback", "0")
    assert (code, out["verdict"], out["xid_lookback_s"]) == (0, "ok", None)
    assert [f for f in out["findings"] if f["check"] in ("xid", "kernel_log")] == []


def test_check_with_an_unreadable_kernel_log_says_so_without_alarm(
        tmp_path: Path, busy_host_policy: Path) -> None:
    code, out = _check(tmp_path / "missing.log")
    assert (code, out["verdict"]) == (0, "ok")
    [note] = out["findings"]
    assert note["check"] == "kernel_log" and note["severity"] == "ok"
    assert "could not be read" in note["message"] and "missing.log" in note["message"]


@pytest.mark.parametrize("value", ["-5", "nan", "3e9"])
def test_check_refuses_a_bad_lookback(kernel_log: Path, value: str) -> None:
    result = runner.invoke(app, ["check", "--kernel-log", str(kernel_log),
                                 "--xid-lookback", value], obj={"nvml": h100_node(1)})
    assert result.exit_code == 3
    assert "--xid-lookback must be between 0 and" in result.output


# -- the daemon's sources --------------------------------------------------------------------


def test_daemon_sources_start_at_the_end_of_the_kernel_log(kernel_log: Path) -> None:
    sources = open_sources(None, "n1", FakeClock(time.time()), nvml=h100_node(8),
                           kernel_log=str(kernel_log))  # what run_command does: no lookback
    try:
        assert sources.backend.drain_xid_events() == []
        assert sources.kernel_log is not None and sources.kernel_log.history is None
        with kernel_log.open("a") as f:
            f.write(f"{iso(time.time())} k: NVRM: Xid (PCI:0000:5d:00): 79, fell off\n")
        assert [(e.xid, e.gpu) for e in sources.backend.drain_xid_events()] == [(79, 3)]
    finally:
        sources.backend.close()
