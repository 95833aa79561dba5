"""XID sources: the kernel-log parser, de-duplication, the log scanner and the NVML event thread."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pynvml as real
import pytest

from agent.gpu.nvml_backend import NvmlBackend
from agent.gpu.xid import (
    KernelLogXidScanner,
    NvmlXidWatcher,
    dedup_xid_events,
    normalize_pci_bus_id,
    parse_kernel_xid_lines,
)
from agent.model import XidEvent
from gpufleet_common.clock import FakeClock
from tests.fakes.fake_pynvml import FakeNvml
from tests.fakes.nvml_profiles import gb300_node, h100_node

BOOT = 1_700_000_000.0
NOW = 1_700_050_000.0
BUSES = {"00000000:3B:00.0": 0, "00000000:18:00.0": 1, "00000000:5D:00.0": 2,
         "00000008:01:00.0": 3}


def wait_for(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.mark.parametrize(
    ("bus_id", "normal"),
    [
        ("00000000:3B:00.0", "0000:3b:00"),
        ("0000:3b:00", "0000:3b:00"),
        ("PCI:0000:3b:00", "0000:3b:00"),
        ("3b:00.0", "0000:3b:00"),
        ("00000008:01:00.0", "0008:01:00"),
        (" 0000:9A:00.0 ", "0000:9a:00"),
        ("not a bus", None),
        ("0000:3b", None),
    ],
)
def test_normalize_pci_bus_id(bus_id: str, normal: str | None) -> None:
    assert normalize_pci_bus_id(bus_id) == normal


@pytest.mark.parametrize(
    ("line", "xid", "gpu", "bus", "timestamp", "message"),
    [
        ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python3, GPU has fallen off the bus.",
         79, 0, "0000:3b:00", NOW, "pid=1234, name=python3, GPU has fallen off the bus."),
        ("[ 1234.567890] NVRM: Xid (PCI:0000:3b:00): 48, pid='<unknown>', name=<unknown>, An "
         "uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at "
         "partition 6, subpartition 0.", 48, 0, "0000:3b:00", BOOT + 1234.56789,
         "pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been "
         "detected on GPU in the framebuffer at partition 6, subpartition 0."),
        ("[Tue Mar  5 12:34:56 2024] NVRM: Xid (PCI:0000:18:00): 13, pid=4242, name=train, "
         "Graphics SM Warp Exception on (GPC 1, TPC 0, SM 1): Out Of Range Address", 13, 1,
         "0000:18:00", datetime(2024, 3, 5, 12, 34, 56).timestamp(),
         "pid=4242, name=train, Graphics SM Warp Exception on (GPC 1, TPC 0, SM 1): Out Of "
         "Range Address"),
        ("Mar 05 12:34:56 node01 kernel: NVRM: Xid (PCI:0000:5d:00): 119, pid=981, name=python, "
         "Timeout after 6s of waiting for RPC response from GPU2 GSP! Expected function 76 "
         "(GSP_RM_CONTROL) (0x20800a4c 0x4).", 119, 2, "0000:5d:00", NOW,
         "pid=981, name=python, Timeout after 6s of waiting for RPC response from GPU2 GSP! "
         "Expected function 76 (GSP_RM_CONTROL) (0x20800a4c 0x4)."),
        ("Mar  5 12:34:56 node01 kernel: [ 99.000001] NVRM: Xid (PCI:0000:5d:00): 94, pid=77, "
         "name=python, Contained: SM (0x1). RST: No, D-RST: No", 94, 2, "0000:5d:00",
         BOOT + 99.000001, "pid=77, name=python, Contained: SM (0x1). RST: No, D-RST: No"),
        ("2024-03-05T12:34:56.250000+00:00 node01 kernel: NVRM: Xid (PCI:0000:3b:00): 95, "
         "pid=12, name=python, Uncontained: FBHUB. RST: Yes, D-RST: No", 95, 0, "0000:3b:00",
         1709642096.25, "pid=12, name=python, Uncontained: FBHUB. RST: Yes, D-RST: No"),
        ("3,1234,5678901234,-;NVRM: Xid (PCI:0008:01:00): 154, GPU recovery action changed "
         "from 0x0 (None) to 0x1 (Reset Required)", 154, 3, "0008:01:00", BOOT + 5678.901234,
         "GPU recovery action changed from 0x0 (None) to 0x1 (Reset Required)"),
        ("NVRM: Xid (0000:3b:00): 62, 0cd9(2d70) 8503d428 ffffe0ff ffffe0ff", 62, 0,
         "0000:3b:00", NOW, "0cd9(2d70) 8503d428 ffffe0ff ffffe0ff"),
        ("NVRM: Xid (PCI:0000:c1:00): 74, pid=1, NVLink: fatal error detected on link 12", 74,
         None, "0000:c1:00", NOW, "pid=1, NVLink: fatal error detected on link 12"),
    ],
)
def test_parse_kernel_xid_line(
    line: str, xid: int, gpu: int | None, bus: str, timestamp: float, message: str
) -> None:
    [event] = parse_kernel_xid_lines([line], BUSES, default_time=NOW, boot_time=BOOT)
    assert event.timestamp == pytest.approx(timestamp, abs=1e-6)
    assert event == XidEvent(xid=xid, timestamp=event.timestamp, gpu=gpu, pci_bus_id=bus,
                             source="kmsg", message=message)


def test_parse_ignores_other_lines_and_keeps_order() -> None:
    lines = [
        "NVRM: loading NVIDIA UNIX x86_64 Kernel Module  550.90.07",
        "NVRM: GPU at PCI:0000:3b:00: GPU-3f1a9c52-8d4e-4b7a-9e21-5c6d7e8f9000",
        " SUBSYSTEM=pci",
        "NVRM: Xid (PCI:0000:3b:00): 31, pid=1, name=a, Ch 00000008, MMU Fault",
        "nvidia-nvlink: IBMNPU: Xid string that is not NVRM",
        "NVRM: Xid (PCI:0000:18:00): 43, pid=2, name=b, Ch 00000010",
    ]
    events = parse_kernel_xid_lines(lines, BUSES, default_time=NOW)
    assert [(e.xid, e.gpu) for e in events] == [(31, 0), (43, 1)]
    assert parse_kernel_xid_lines([], BUSES) == []


def test_uptime_stamps_without_boot_time_use_the_default() -> None:
    line = "[ 12.5] NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus."
    assert parse_kernel_xid_lines([line], {}, default_time=NOW)[0].timestamp == NOW


def _ev(xid: int, gpu: int | None, t: float, source: str) -> XidEvent:
    return XidEvent(xid=xid, timestamp=t, gpu=gpu, source=source)


@pytest.mark.parametrize(
    ("new", "unmatched", "kept"),
    [
        # one fault seen by both sources: reported once
        ([_ev(79, 2, 10.0, "nvml"), _ev(79, 2, 11.5, "kmsg")], [], [0]),
        # the same fault, the kernel line first
        ([_ev(79, 2, 10.0, "kmsg"), _ev(79, 2, 10.1, "nvml")], [], [0]),
        # too far apart: two faults
        ([_ev(79, 2, 10.0, "nvml"), _ev(79, 2, 20.0, "kmsg")], [], [0, 1]),
        # other GPU or other XID: not the same fault
        ([_ev(79, 2, 10.0, "nvml"), _ev(79, 3, 10.0, "kmsg")], [], [0, 1]),
        ([_ev(79, 2, 10.0, "nvml"), _ev(48, 2, 10.0, "kmsg")], [], [0, 1]),
        # repeats from one source are real repeats
        ([_ev(13, 1, 10.0, "nvml"), _ev(13, 1, 10.0, "nvml")], [], [0, 1]),
        # one twin each: two kernel lines after one NVML event are two faults
        ([_ev(13, 1, 10.0, "nvml"), _ev(13, 1, 10.2, "kmsg"), _ev(13, 1, 10.3, "kmsg")], [],
         [0, 2]),
        # the twin arrived in an earlier drain
        ([_ev(79, 2, 11.0, "kmsg")], [_ev(79, 2, 10.0, "nvml")], []),
    ],
)
def test_dedup_xid_events(
    new: list[XidEvent], unmatched: list[XidEvent], kept: list[int]
) -> None:
    result, _ = dedup_xid_events(new, unmatched, window_s=5.0)
    assert result == [new[i] for i in kept]


def test_dedup_matches_by_bus_when_the_gpu_is_unknown() -> None:
    nvml = XidEvent(xid=79, timestamp=10.0, gpu=None, pci_bus_id="00000000:3B:00.0")
    kmsg = XidEvent(xid=79, timestamp=10.5, gpu=None, pci_bus_id="0000:3b:00", source="kmsg")
    kept, unmatched = dedup_xid_events([nvml, kmsg], [], window_s=5.0)
    assert kept == [nvml] and unmatched == []


# -- the kernel log scanner --------------------------------------------------------------------


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(text)


def test_scanner_reads_only_new_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("NVRM: Xid (PCI:0000:3b:00): 62, old news\n")
    clock = FakeClock()
    scanner = KernelLogXidScanner(clock, str(log), {"00000000:3B:00.0": 4})
    try:
        assert scanner.poll() == []  # starts at the end
        _append(log, "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\nNVRM: Xid (")
        events = scanner.poll()
        assert [(e.xid, e.gpu, e.timestamp) for e in events] == [(79, 4, clock.time())]
        assert scanner.poll() == []  # the half line waits for its end
        _append(log, "PCI:0000:3b:00): 48, DBE\n")
        assert [e.xid for e in scanner.poll()] == [48]
    finally:
        scanner.close()


def test_scanner_from_start_and_after_truncation(tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("NVRM: Xid (PCI:0000:3b:00): 13, one\nNVRM: Xid (PCI:0000:3b:00): 31, two\n")
    scanner = KernelLogXidScanner(FakeClock(), str(log), from_start=True)
    try:
        assert [e.xid for e in scanner.poll()] == [13, 31]
        log.write_text("NVRM: Xid (PCI:0000:3b:00): 94, rotated\n")  # shorter: truncated
        assert [e.xid for e in scanner.poll()] == [94]
    finally:
        scanner.close()


def test_scanner_unreadable_log_is_counted_and_retried(tmp_path: Path) -> None:
    clock = FakeClock()
    missing = tmp_path / "nope.log"
    scanner = KernelLogXidScanner(clock, str(missing), retry_s=60.0)
    assert scanner.poll() == [] and scanner.poll() == []
    assert (scanner.errors, scanner.available) == (1, False)  # not retried before retry_s
    assert "nope.log" in scanner.last_error
    missing.write_text("")
    clock.advance(61)
    assert scanner.poll() == [] and scanner.available
    _append(missing, "NVRM: Xid (PCI:0000:3b:00): 79, GPU has fallen off the bus.\n")
    assert [e.xid for e in scanner.poll()] == [79]
    scanner.close()
    directory = KernelLogXidScanner(clock, str(tmp_path))  # opens, but cannot be read
    assert directory.poll() == [] and directory.errors == 1
    directory.close()


@pytest.mark.skipif(not os.access("/dev/kmsg", os.R_OK), reason="no readable /dev/kmsg")
def test_scanner_opens_dev_kmsg_as_records() -> None:
    scanner = KernelLogXidScanner(FakeClock())
    try:
        events = scanner.poll()  # from the end: only what the kernel logs from now on
        assert scanner.available and scanner.errors == 0
        assert all(e.source == "kmsg" for e in events)
    finally:
        scanner.close()


# -- the NVML event thread ---------------------------------------------------------------------


@pytest.fixture
def watchers() -> Iterator[list[NvmlXidWatcher]]:
    made: list[NvmlXidWatcher] = []
    yield made
    for w in made:
        assert w.stop(timeout_s=2.0)


def _watch(fake: FakeNvml, made: list[NvmlXidWatcher], **kwargs: Any) -> NvmlXidWatcher:
    fake.nvmlInit()
    devices = [(i, fake.handle(i)) for i in range(len(fake.gpus))]
    watcher = NvmlXidWatcher(fake, devices, FakeClock(), wait_ms=20, max_backoff_s=0.05,
                             **kwargs)
    made.append(watcher)
    watcher.start()
    return watcher


def collect(drain: Callable[[], list[XidEvent]], count: int, timeout_s: float = 3.0
            ) -> list[XidEvent]:
    """Drain until `count` events arrived or the time is up."""
    got: list[XidEvent] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += drain()
        time.sleep(0.005)
    return got


def test_watcher_delivers_xid_79_and_stops(watchers: list[NvmlXidWatcher]) -> None:
    fake = h100_node(4)
    watcher = _watch(fake, watchers, bus_ids={3: "0000:5d:00"})
    assert wait_for(lambda: len(watcher.registered) == 4)
    fake.inject_event(3, real.nvmlEventTypeXidCriticalError, 79)
    events = collect(watcher.drain, 1)
    assert events == [XidEvent(xid=79, timestamp=FakeClock().time(), gpu=3,
                               pci_bus_id="0000:5d:00", source="nvml",
                               message="NVML event 0x8")]
    started = time.monotonic()
    assert watcher.stop(timeout_s=2.0)
    assert time.monotonic() - started < 1.0 and not watcher.running
    assert fake.calls["nvmlEventSetFree"] == 1
    assert watcher.errors == 0  # timeouts are normal, not errors


def test_watcher_maps_event_types_and_delivers_pending(watchers: list[NvmlXidWatcher]) -> None:
    fake = gb300_node(2)
    fake.gpus[1].pending_events.append((real.nvmlEventTypeDoubleBitEccError, 0))
    watcher = _watch(fake, watchers)
    fake.inject_event(0, real.nvmlEventTypeGpuRecoveryAction,
                      real.NVML_GPU_RECOVERY_ACTION_GPU_RESET)
    fake.inject_event(0, real.nvmlEventTypePState, 3)  # not asked for: never delivered
    events = collect(watcher.drain, 2)
    assert sorted((e.xid, e.gpu) for e in events) == [(48, 1), (154, 0)]
    assert "data 1" in next(e.message for e in events if e.xid == 154)


def test_watcher_registers_only_supported_types(watchers: list[NvmlXidWatcher]) -> None:
    fake = h100_node(3)
    fake.gpus[0].supported_events = real.nvmlEventTypeXidCriticalError
    fake.gpus[1].unsupported.add("nvmlDeviceGetSupportedEventTypes")
    watcher = _watch(fake, watchers)
    assert wait_for(lambda: fake.calls["nvmlEventSetWait_v2"] > 0)
    assert watcher.registered[0] == real.nvmlEventTypeXidCriticalError
    assert 1 not in watcher.registered
    assert watcher.registered[2] & real.nvmlEventTypeGpuRecoveryAction
    assert watcher.errors == 0


def test_watcher_counts_errors_backs_off_and_recovers(watchers: list[NvmlXidWatcher]) -> None:
    fake = h100_node(1)
    fake.event_wait_errors = [real.NVML_ERROR_UNKNOWN] * 6
    watcher = _watch(fake, watchers)
    assert wait_for(lambda: watcher.errors >= 6)
    assert "Unknown Error" in watcher.last_error
    fake.inject_event(0, real.nvmlEventTypeXidCriticalError, 13)
    assert [e.xid for e in collect(watcher.drain, 1)] == [13]
    assert watcher.running
    assert fake.calls["nvmlEventSetCreate"] == 2  # rebuilt after repeated failures


def test_watcher_queue_is_bounded_and_keeps_the_earliest(
    watchers: list[NvmlXidWatcher],
) -> None:
    fake = h100_node(1)
    for xid in (79, 48, 13, 31, 43):
        fake.gpus[0].pending_events.append((real.nvmlEventTypeXidCriticalError, xid))
    watcher = _watch(fake, watchers, max_queue=3)
    assert wait_for(lambda: watcher.dropped == 2)
    assert [e.xid for e in watcher.drain()] == [79, 48, 13]


def test_watcher_with_nothing_to_watch_ends_quietly(watchers: list[NvmlXidWatcher]) -> None:
    fake = h100_node(2)
    for gpu in fake.gpus:
        gpu.supported_events = real.nvmlEventTypePState
    watcher = _watch(fake, watchers)
    assert wait_for(lambda: not watcher.running)
    assert watcher.registered == {} and watcher.errors == 0 and watcher.drain() == []


# -- both sources through the backend ------------------------------------------------------------


def test_backend_merges_nvml_and_kernel_xids_once(tmp_path: Path) -> None:
    log = tmp_path / "kmsg.log"
    log.write_text("")
    fake = h100_node(4)
    backend = NvmlBackend(nvml=fake, clock=FakeClock(), kernel_log=str(log), xid_wait_ms=20)
    try:
        fake.inject_event(2, real.nvmlEventTypeXidCriticalError, 79)
        got = collect(backend.drain_xid_events, 1)
        # the kernel's line for the same fault comes later, with one NVML never reported
        _append(log, "6,900,123456,-;NVRM: Xid (PCI:0000:3a:00): 79, pid=1, GPU has fallen off "
                     "the bus.\n6,901,123457,-;NVRM: Xid (PCI:0000:5d:00): 62, 0cd9(2d70)\n")
        got += backend.drain_xid_events()
        assert [(e.xid, e.gpu, e.source) for e in got] == [(79, 2, "nvml"), (62, 3, "kmsg")]
        status = backend.xid_source_status()
        assert status["kernel_log"] is True and status["nvml_running"] is True
    finally:
        backend.close()
    assert backend.xid_source_status()["nvml_running"] is False


def test_backend_without_kernel_log_permission_still_works(tmp_path: Path) -> None:
    backend = NvmlBackend(nvml=h100_node(1), clock=FakeClock(), watch_xid=False,
                          kernel_log=str(tmp_path / "missing"))
    try:
        assert backend.drain_xid_events() == []
        status = backend.xid_source_status()
        assert status["kernel_log"] is False and status["kernel_log_errors"] == 1
        assert len(backend.devices()) == 1
    finally:
        backend.close()
