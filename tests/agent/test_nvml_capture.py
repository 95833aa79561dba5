"""Captured NVML readings replayed through NvmlBackend, and the backend on a real GPU."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pynvml as real
import pytest

from agent.gpu.nvml_backend import NvmlBackend
from agent.model import GpuSample, ReadStatus
from gpufleet_common.clock import FakeClock, SystemClock
from tests.fakes.capture_nvml import (
    FORMAT,
    anonymise,
    capture,
    dumps_capture,
    fake_from_capture,
    read_capture,
)
from tests.fakes.fake_pynvml import FakeNvml, load_captured
from tests.fakes.nvml_profiles import gb300_node, h100_node

DATA = Path(__file__).resolve().parent.parent / "data" / "nvml"
H100_CAPTURE = DATA / "h100_sxm_healthy.json"


def _samples(backend: NvmlBackend) -> list[GpuSample]:
    return [d.sample() for d in backend.devices()]


def test_h100_capture_replays_through_the_backend() -> None:
    backend = NvmlBackend(nvml=load_captured(str(H100_CAPTURE)), clock=FakeClock(),
                          watch_xid=False, kernel_log=None)
    try:
        system = backend.system()
        assert (system.driver_version, system.cuda_driver_version, system.gpu_count) == (
            "550.90.07", "12.4", 8)
        samples = _samples(backend)
    finally:
        backend.close()
    assert len(samples) == 8
    for s in samples:
        assert s.name == "NVIDIA H100 80GB HBM3" and not s.lost
        errors = {k: u for k, u in s.unavailable.items() if u.status is not ReadStatus.NOT_SUPPORTED}
        assert errors == {}
        # what an R550 driver lacks shows as not applicable, through the fallbacks
        assert s.temperature_c is not None  # nvmlDeviceGetTemperatureV: FunctionNotFound
        assert s.fabric is not None and s.fabric.health_summary is None  # no v3 struct
        assert {"memory_unrepairable", "recovery_action"} <= set(s.unavailable)
        assert s.nvlinks is not None and len(s.nvlinks) == 18
    busy = samples[3]
    assert (busy.ecc_sbe_aggregate, busy.remapped_rows_correctable, busy.power_violation_ns) == (
        2, 1, 4_180_220_000)
    assert busy.clock_event_reasons == real.nvmlClocksEventReasonSwPowerCap
    assert samples[2].nvlinks is not None and samples[2].nvlinks[7].replay_errors == 1
    assert samples[5].pcie_replay_count == 3
    assert samples[0].memory_temp_c == samples[0].temperature_c + 7  # type: ignore[operator]


@pytest.mark.parametrize("make", [h100_node, gb300_node])
def test_capture_then_replay_reads_the_same(make: Callable[[], FakeNvml]) -> None:
    doc = json.loads(dumps_capture(capture(make())))
    assert doc["format"] == FORMAT
    clock = FakeClock()
    original = NvmlBackend(nvml=make(), clock=clock, watch_xid=False, kernel_log=None)
    replayed = NvmlBackend(nvml=fake_from_capture(doc), clock=clock, watch_xid=False,
                           kernel_log=None)
    try:
        assert _samples(replayed) == _samples(original)
        assert replayed.system() == original.system()
    finally:
        original.close()
        replayed.close()


def test_anonymise_replaces_ids_stably() -> None:
    doc = capture(h100_node(2))
    again = json.loads(json.dumps(doc))
    anonymise(doc)
    anonymise(again)
    uuids = [c["value"] for g in doc["gpus"] for c in g["calls"] if c["fn"] == "nvmlDeviceGetUUID"]
    assert uuids == [c["value"] for g in again["gpus"] for c in g["calls"]
                     if c["fn"] == "nvmlDeviceGetUUID"]
    assert all(u.startswith("GPU-") for u in uuids)
    assert not {u for u in uuids} & {g.uuid for g in h100_node(2).gpus}


def test_bad_captures_are_refused_clearly(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "something-else/9"}))
    with pytest.raises(ValueError, match="something-else/9"):
        read_capture(str(wrong))
    doc = capture(h100_node(1))
    doc["gpus"][0]["calls"].append({"fn": "nvmlDeviceGetMysteryCounter", "args": [], "value": 1})
    with pytest.raises(ValueError, match="GPU 0: nvmlDeviceGetMysteryCounter"):
        fake_from_capture(doc)


@pytest.mark.gpu
def test_real_gpu_sweep_and_capture_round_trip() -> None:
    backend = NvmlBackend(clock=SystemClock(), watch_xid=True, kernel_log=None)
    try:
        if "nvml" in backend.system().unavailable:
            pytest.skip(f"NVML unavailable: {backend.system().unavailable['nvml'].detail}")
        samples = _samples(backend)
        assert samples, "NVML is up but shows no GPU"
        for s in samples:
            errors = {k: u for k, u in s.unavailable.items() if u.status is ReadStatus.ERROR}
            assert errors == {}, f"GPU {s.index}: {errors}"
            assert not s.lost and s.uuid is not None and s.uuid.startswith("GPU-")
            assert s.temperature_c is not None and s.power_w is not None
        assert isinstance(backend.drain_xid_events(), list)  # whatever the host had; no raise
    finally:
        backend.close()
    replay = NvmlBackend(nvml=fake_from_capture(capture(real)), clock=FakeClock(),
                         watch_xid=False, kernel_log=None)
    try:
        for live, again in zip(samples, _samples(replay), strict=True):
            for name in ("uuid", "name", "serial", "pci_bus_id", "vbios_version", "fabric"):
                assert getattr(again, name) == getattr(live, name), name
            assert {k: u.status for k, u in again.unavailable.items()} == {
                k: u.status for k, u in live.unavailable.items()}
    finally:
        replay.close()
