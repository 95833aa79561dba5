"""NvmlBackend against the fake pynvml: every field, every failure mode, caching and fallbacks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import fields as dataclass_fields
from typing import Any

import pynvml as real
import pytest

from agent.gpu.backend import GpuBackend, GpuDevice
from agent.gpu.nvml_backend import NvmlBackend
from agent.gpu.nvml_device import SAMPLE_FIELDS
from agent.model import GpuSample, ReadStatus, Unavailable
from gpufleet_common.clock import FakeClock
from tests.fakes.fake_pynvml import GARBAGE, FakeNvml
from tests.fakes.nvml_profiles import gb300, gb300_node, h100_node, h100_sxm

MakeBackend = Callable[..., NvmlBackend]
# On an H100 these are N/A by design: page retirement is pre-Ampere, NVLink5 is Blackwell.
H100_NOT_APPLICABLE = {"retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending",
                       "nvlink5_counters"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_backend(clock: FakeClock) -> Iterator[MakeBackend]:
    made: list[NvmlBackend] = []

    def make(nvml: Any, **kwargs: Any) -> NvmlBackend:
        kwargs.setdefault("watch_xid", False)
        kwargs.setdefault("kernel_log", None)
        backend = NvmlBackend(nvml=nvml, clock=clock, **kwargs)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def sweep(backend: NvmlBackend) -> list[GpuSample]:
    return [d.sample() for d in backend.devices()]


def statuses(sample: GpuSample) -> dict[str, ReadStatus]:
    return {k: u.status for k, u in sample.unavailable.items()}


def as_gpu_backend(backend: NvmlBackend) -> GpuBackend:
    return backend  # mypy checks NvmlBackend (and NvmlDevice) against the seam's Protocols


def test_backend_implements_the_gpu_seam(make_backend: MakeBackend) -> None:
    backend = as_gpu_backend(make_backend(h100_node(2)))
    devices: list[GpuDevice] = backend.devices()
    assert [d.index for d in devices] == [0, 1]
    assert devices[1].sample().index == 1


def test_sample_fields_cover_every_gpu_sample_field() -> None:
    declared = {f.name for f in dataclass_fields(GpuSample)} - {"index", "unavailable"}
    assert sorted(SAMPLE_FIELDS) == sorted(declared)


def test_healthy_h100_node_fills_every_field(make_backend: MakeBackend) -> None:
    backend = make_backend(h100_node())
    system = backend.system()
    assert (system.driver_version, system.cuda_driver_version, system.nvml_version,
            system.gpu_count, dict(system.unavailable)) == (
        "570.133.20", "12.8", "12.570.133.20", 8, {})
    samples = sweep(backend)
    assert [s.index for s in samples] == list(range(8))
    for s in samples:
        missing = {name for name in SAMPLE_FIELDS if getattr(s, name) is None}
        assert missing == H100_NOT_APPLICABLE
        assert statuses(s) == dict.fromkeys(H100_NOT_APPLICABLE, ReadStatus.NOT_SUPPORTED)
        assert not s.lost
    assert len({s.uuid for s in samples}) == 8


def test_h100_values_are_converted_to_base_units(make_backend: MakeBackend) -> None:
    s = sweep(make_backend(h100_node(1)))[0]
    expected: dict[str, object] = {
        "name": "NVIDIA H100 80GB HBM3", "pci_bus_id": "00000000:18:00.0", "minor_number": 0,
        "inforom_oem_version": "2.1", "inforom_ecc_version": "7.16", "persistence_mode": True,
        "temperature_c": 33.0, "slowdown_temp_c": 89.0, "shutdown_temp_c": 92.0,
        "memory_temp_c": 38.0, "power_w": 71.234, "power_limit_w": 700.0,
        "energy_mj": 182_734_551_203, "sm_clock_mhz": 1980.0, "mem_clock_mhz": 2619.0,
        "clock_event_reasons": real.nvmlClocksEventReasonGpuIdle, "fb_used_mib": 4.0,
        "fb_reserved_mib": 636.0, "fb_free_mib": 81559.0 - 636.0 - 4.0, "recovery_action": 0,
        "pcie_gen_current": 5, "pcie_width_max": 16, "remap_pending": False,
        "memory_unrepairable": False,
    }
    assert {k: getattr(s, k) for k in expected} == expected
    assert s.nvlinks is not None and len(s.nvlinks) == 18
    assert all(link.up and link.replay_errors == 0 for link in s.nvlinks)
    assert s.fabric is not None and s.fabric.state == real.NVML_GPU_FABRIC_STATE_COMPLETED


def test_gb300_reads_nvlink5_counters_and_fabric(make_backend: MakeBackend) -> None:
    fake = gb300_node(2)
    malformed = real.NVML_FI_DEV_NVLINK_COUNT_MALFORMED_PACKET_ERRORS
    recovered = real.NVML_FI_DEV_NVLINK_COUNT_LINK_RECOVERY_SUCCESSFUL_EVENTS
    fake.gpus[1].set_field(malformed, 2, scope=3)
    fake.gpus[1].set_field(malformed, 5, scope=7)
    fake.gpus[1].set_field(recovered, 1, scope=17)
    healthy, counting = sweep(make_backend(fake))
    assert healthy.nvlink5_counters is not None
    assert set(healthy.nvlink5_counters.values()) == {0}
    assert "link_recovery_failed_events" in healthy.nvlink5_counters
    assert counting.nvlink5_counters is not None
    assert counting.nvlink5_counters["malformed_packet_errors"] == 7  # summed over links
    assert counting.nvlink5_counters["link_recovery_successful_events"] == 1
    assert healthy.fabric is not None
    assert (healthy.fabric.cluster_uuid, healthy.fabric.clique_id, healthy.fabric.status,
            healthy.fabric.health_summary) == (
        "6f1d2c3b-4a59-4837-8e2f-1a0b9c8d7e6f", 32766, real.NVML_SUCCESS,
        real.NVML_GPU_FABRIC_HEALTH_SUMMARY_HEALTHY)
    assert healthy.nvlinks is not None
    assert all(link.up and link.replay_errors is None for link in healthy.nvlinks)
    assert statuses(healthy)["nvlinks.replay_errors"] is ReadStatus.NOT_SUPPORTED
    assert ReadStatus.ERROR not in statuses(healthy).values()


@pytest.mark.parametrize(
    ("function", "fields"),
    [
        ("nvmlDeviceGetPowerUsage", ["power_w"]),
        ("nvmlDeviceGetSerial", ["serial"]),
        ("nvmlDeviceGetRemappedRows", ["remapped_rows_correctable", "remapped_rows_uncorrectable",
                                       "remap_pending", "remap_failure"]),
        ("nvmlDeviceGetTotalEccErrors", ["ecc_sbe_volatile", "ecc_dbe_volatile",
                                         "ecc_sbe_aggregate", "ecc_dbe_aggregate"]),
        ("nvmlDeviceGetViolationStatus", ["thermal_violation_ns", "power_violation_ns"]),
        ("nvmlDeviceGetUtilizationRates", ["gpu_util_pct", "mem_copy_util_pct"]),
        ("nvmlDeviceGetFieldValues", ["memory_temp_c", "recovery_action", "nvlink5_counters"]),
        ("nvmlDeviceGetGpuFabricInfoV", ["fabric"]),
        ("nvmlDeviceGetPcieReplayCounter", ["pcie_replay_count"]),
    ],
)
def test_not_supported_is_not_applicable_not_an_error(
    make_backend: MakeBackend, function: str, fields: list[str]
) -> None:
    gpu = h100_sxm(0)
    gpu.unsupported.add(function)
    s = sweep(make_backend(FakeNvml([gpu])))[0]
    for name in fields:
        assert getattr(s, name) is None
        assert s.unavailable[name].status is ReadStatus.NOT_SUPPORTED
    assert ReadStatus.ERROR not in statuses(s).values()
    assert s.temperature_c == 33.0  # the rest still read


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (real.NVML_ERROR_UNKNOWN, "Unknown Error"),
        (real.NVML_ERROR_NO_PERMISSION, "Insufficient Permissions"),
        (real.NVML_ERROR_TIMEOUT, "Timeout"),
        (real.NVML_ERROR_FUNCTION_NOT_FOUND, "Function Not Found"),  # not an optional API here
    ],
)
def test_other_errors_are_errors_with_the_nvml_text(
    make_backend: MakeBackend, code: int, text: str
) -> None:
    gpu = h100_sxm(0)
    gpu.errors["nvmlDeviceGetPowerUsage"] = code
    s = sweep(make_backend(FakeNvml([gpu])))[0]
    assert s.power_w is None
    assert s.unavailable["power_w"].status is ReadStatus.ERROR
    assert text in s.unavailable["power_w"].detail
    assert s.power_limit_w == 700.0


class _RaisingNvml(FakeNvml):
    """A binding that misbehaves outside NVMLError (a ctypes or Python error)."""

    def nvmlDeviceGetTotalEnergyConsumption(self, h: Any) -> int:
        raise OverflowError("int too large to convert")

    def nvmlDeviceGetFieldValues(self, h: Any, field_ids: Any) -> Any:
        return None  # not a sequence: indexing it raises TypeError


def test_non_nvml_exceptions_become_errors(make_backend: MakeBackend) -> None:
    s = sweep(make_backend(_RaisingNvml([h100_sxm(0)])))[0]
    assert s.unavailable["energy_mj"] == Unavailable(
        ReadStatus.ERROR, "OverflowError: int too large to convert")
    for name in ("memory_temp_c", "recovery_action", "nvlink5_counters"):
        assert s.unavailable[name].status is ReadStatus.ERROR
        assert s.unavailable[name].detail.startswith("TypeError")
    assert s.power_w == 71.234


@pytest.mark.parametrize(
    ("ret", "status"),
    [(real.NVML_ERROR_NOT_SUPPORTED, ReadStatus.NOT_SUPPORTED),
     (real.NVML_ERROR_UNKNOWN, ReadStatus.ERROR),
     (real.NVML_ERROR_GPU_IS_LOST, ReadStatus.GPU_LOST)],
)
def test_failed_field_value_is_unavailable_never_the_garbage(
    make_backend: MakeBackend, ret: int, status: ReadStatus
) -> None:
    gpu = h100_sxm(0)
    gpu.field_returns[real.NVML_FI_DEV_MEMORY_TEMP] = ret
    s = sweep(make_backend(FakeNvml([gpu])))[0]
    assert s.memory_temp_c is None
    assert s.unavailable["memory_temp_c"].status is status
    assert "field 82" in s.unavailable["memory_temp_c"].detail
    assert s.recovery_action == 0  # its neighbour in the same call is fine
    assert GARBAGE not in {v for v in (s.memory_temp_c, s.recovery_action)}


def test_nvlink5_counter_failing_on_one_link_is_dropped_not_undercounted(
    make_backend: MakeBackend,
) -> None:
    gpu = gb300(0)
    symbol = real.NVML_FI_DEV_NVLINK_COUNT_SYMBOL_ERRORS
    gpu.set_field(symbol, 40, scope=2)
    gpu.field_returns[(symbol, 5)] = real.NVML_ERROR_UNKNOWN
    gpu.field_returns[(real.NVML_FI_DEV_NVLINK_COUNT_XMIT_DISCARDS, 9)] = (
        real.NVML_ERROR_NOT_SUPPORTED)
    s = sweep(make_backend(FakeNvml([gpu])))[0]
    assert s.nvlink5_counters is not None
    assert "symbol_errors" not in s.nvlink5_counters
    assert s.unavailable["nvlink5_counters.symbol_errors"].status is ReadStatus.ERROR
    assert s.nvlink5_counters["xmit_discards"] == 0  # N/A on one link: the rest still count
    assert "nvlink5_counters.xmit_discards" not in s.unavailable


def test_gpu_lost_mid_run_marks_that_gpu_only_and_stops_reading_it(
    make_backend: MakeBackend,
) -> None:
    fake = h100_node(3)
    backend = make_backend(fake)
    sweep(backend)
    fake.gpus[1].lost = True
    before = sum(fake.calls.values())
    lost = backend.devices()[1].sample()
    assert sum(fake.calls.values()) - before == 1  # the first read said lost; nothing after
    assert lost.lost
    assert lost.uuid == fake.gpus[1].uuid and lost.pci_bus_id is not None  # identity is cached
    assert lost.temperature_c is None and lost.nvlinks is None
    assert {u.status for u in lost.unavailable.values()} == {ReadStatus.GPU_LOST}
    others = [backend.devices()[i].sample() for i in (0, 2)]
    assert not any(s.lost for s in others)
    assert all(s.temperature_c == 33.0 for s in others)


def test_gpu_lost_before_start_still_appears(make_backend: MakeBackend) -> None:
    fake = h100_node(2)
    fake.gpus[0].lost = True
    backend = make_backend(fake)
    assert [d.index for d in backend.devices()] == [0, 1]
    lost, fine = sweep(backend)
    assert lost.lost and lost.uuid is None
    assert set(lost.unavailable) == set(SAMPLE_FIELDS)
    assert not fine.lost


def test_handle_failure_is_reported_and_retried(make_backend: MakeBackend) -> None:
    fake = h100_node(2)
    fake.gpus[1].errors["nvmlDeviceGetHandleByIndex"] = real.NVML_ERROR_UNKNOWN
    backend = make_backend(fake)
    s = sweep(backend)[1]
    assert s.name is None
    assert s.unavailable["name"].status is ReadStatus.ERROR
    assert "handle" in s.unavailable["name"].detail
    del fake.gpus[1].errors["nvmlDeviceGetHandleByIndex"]
    assert sweep(backend)[1].name == "NVIDIA H100 80GB HBM3"


@pytest.mark.parametrize(
    ("code", "text"),
    [(real.NVML_ERROR_LIBRARY_NOT_FOUND, "NVML Shared Library Not Found"),
     (real.NVML_ERROR_DRIVER_NOT_LOADED, "Driver Not Loaded"),
     (real.NVML_ERROR_LIB_RM_VERSION_MISMATCH, "version mismatch")],
)
def test_init_failure_is_data_and_is_retried(
    make_backend: MakeBackend, clock: FakeClock, code: int, text: str
) -> None:
    fake = h100_node(2)
    fake.init_error = code
    backend = make_backend(fake, init_retry_s=30.0)
    system = backend.system()
    assert system.unavailable["nvml"].status is ReadStatus.ERROR
    assert text in system.unavailable["nvml"].detail
    assert system.gpu_count is None and "gpu_count" in system.unavailable
    assert backend.devices() == []
    assert backend.drain_xid_events() == []
    fake.init_error = None
    clock.advance(10)
    assert backend.devices() == []  # not retried before init_retry_s
    clock.advance(25)
    assert len(backend.devices()) == 2
    assert backend.system().unavailable == {}


def test_calls_before_init_raise_uninitialized_like_pynvml() -> None:
    fake = h100_node(1)
    with pytest.raises(real.NVMLError_Uninitialized):
        fake.nvmlDeviceGetCount()
    with pytest.raises(real.NVMLError_Uninitialized):
        fake.nvmlDeviceGetName(fake.handle(0))
    with pytest.raises(AttributeError, match="does not implement"):
        _ = fake.nvmlDeviceGetBAR1MemoryInfo


def test_system_read_failures_are_per_field(make_backend: MakeBackend) -> None:
    fake = FakeNvml([h100_sxm(0)], system_errors={
        "nvmlSystemGetDriverVersion": real.NVML_ERROR_UNKNOWN,
        "nvmlSystemGetCudaDriverVersion_v2": real.NVML_ERROR_FUNCTION_NOT_FOUND,
    })
    system = make_backend(fake).system()
    assert system.driver_version is None
    assert system.unavailable["driver_version"].status is ReadStatus.ERROR
    assert system.cuda_driver_version == "12.8"  # from the pre-_v2 entry point
    assert system.nvml_version == "12.570.133.20"


def test_temperature_falls_back_to_the_deprecated_call_once(make_backend: MakeBackend) -> None:
    gpu = h100_sxm(0)
    gpu.errors["nvmlDeviceGetTemperatureV"] = real.NVML_ERROR_FUNCTION_NOT_FOUND
    fake = FakeNvml([gpu])
    backend = make_backend(fake)
    first, second = sweep(backend)[0], sweep(backend)[0]
    assert first.temperature_c == second.temperature_c == 33.0
    assert "temperature_c" not in first.unavailable
    assert fake.calls["nvmlDeviceGetTemperatureV"] == 1
    assert fake.calls["nvmlDeviceGetTemperature"] == 2


def test_old_driver_apis_fall_back_or_say_not_supported(make_backend: MakeBackend) -> None:
    gpu = h100_sxm(0)
    gpu.errors["nvmlDeviceGetMemoryInfo_v2"] = real.NVML_ERROR_FUNCTION_NOT_FOUND
    gpu.errors["nvmlDeviceGetUnrepairableMemoryFlag_v1"] = real.NVML_ERROR_FUNCTION_NOT_FOUND
    gpu.errors["nvmlDeviceGetCurrentClocksEventReasons"] = real.NVML_ERROR_FUNCTION_NOT_FOUND
    assert gpu.fabric is not None
    gpu.fabric.versions = frozenset({real.nvmlGpuFabricInfo_v2})
    s = sweep(make_backend(FakeNvml([gpu])))[0]
    assert (s.fb_used_mib, s.fb_free_mib, s.fb_reserved_mib) == (4.0, 81559.0 - 640.0, None)
    assert s.unavailable["fb_reserved_mib"].status is ReadStatus.NOT_SUPPORTED
    assert s.unavailable["memory_unrepairable"].status is ReadStatus.NOT_SUPPORTED
    assert s.clock_event_reasons == real.nvmlClocksEventReasonGpuIdle  # the R5xx name
    assert s.fabric is not None and s.fabric.health_summary is None  # v2 struct has none
    assert s.fabric.state == real.NVML_GPU_FABRIC_STATE_COMPLETED


def test_identity_is_cached_and_health_is_reread(make_backend: MakeBackend) -> None:
    fake = h100_node(2)
    backend = make_backend(fake)
    for _ in range(3):
        sweep(backend)
    assert fake.calls["nvmlDeviceGetName"] == 2  # once per GPU
    assert fake.calls["nvmlDeviceGetVbiosVersion"] == 2
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 6  # every sweep
    assert fake.calls["nvmlDeviceGetFieldValues"] == 6  # one batched call per GPU per sweep
    fake.gpus[0].power_usage_mw = 500_000
    fake.gpus[0].name = "renamed"
    s = sweep(backend)[0]
    assert (s.power_w, s.name) == (500.0, "NVIDIA H100 80GB HBM3")


def test_not_supported_is_remembered_then_asked_again(
    make_backend: MakeBackend, clock: FakeClock
) -> None:
    fake = h100_node(1)
    backend = make_backend(fake, reprobe_s=300.0)
    for _ in range(5):
        s = sweep(backend)[0]
        assert s.unavailable["retired_pages_sbe"].status is ReadStatus.NOT_SUPPORTED
    assert fake.calls["nvmlDeviceGetRetiredPages"] == 2  # SBE and DBE, once each
    clock.advance(301)
    fake.gpus[0].unsupported.discard("nvmlDeviceGetRetiredPages")
    s = sweep(backend)[0]
    assert (s.retired_pages_sbe, s.retired_pages_dbe) == (0, 0)


def test_nvlink_count_is_learned_once_and_links_down_show(make_backend: MakeBackend) -> None:
    fake = h100_node(1)
    fake.gpus[0].nvlink_states[4] = real.NVML_FEATURE_DISABLED
    fake.gpus[0].nvlink_errors[(4, real.NVML_NVLINK_ERROR_DL_RECOVERY)] = 3
    backend = make_backend(fake)
    s = sweep(backend)[0]
    assert fake.calls["nvmlDeviceGetNvLinkState"] == 19  # 18 links, then InvalidArgument
    sweep(backend)
    assert fake.calls["nvmlDeviceGetNvLinkState"] == 19 + 18
    assert s.nvlinks is not None
    assert [link.link for link in s.nvlinks if not link.up] == [4]
    assert s.nvlinks[4].recovery_errors == 3


def test_gpu_without_nvlink(make_backend: MakeBackend) -> None:
    gpu = h100_sxm(0)
    gpu.nvlink_states, gpu.nvlink_end_error = [], real.NVML_ERROR_NOT_SUPPORTED
    s = sweep(make_backend(FakeNvml([gpu])))[0]
    assert s.nvlinks is None and s.nvlink5_counters is None
    assert s.unavailable["nvlinks"].status is ReadStatus.NOT_SUPPORTED
    assert s.unavailable["nvlink5_counters"].status is ReadStatus.NOT_SUPPORTED


def test_one_dl_counter_failing_on_one_link(make_backend: MakeBackend) -> None:
    gpu = h100_sxm(0)
    gpu.call_errors[("nvmlDeviceGetNvLinkErrorCounter",
                     (5, real.NVML_NVLINK_ERROR_DL_REPLAY))] = real.NVML_ERROR_UNKNOWN
    s = sweep(make_backend(FakeNvml([gpu])))[0]
    assert s.nvlinks is not None
    assert s.nvlinks[5].replay_errors is None and s.nvlinks[5].crc_flit_errors == 0
    assert s.nvlinks[6].replay_errors == 0
    assert s.unavailable["nvlinks.replay_errors"].status is ReadStatus.ERROR
    assert "link 5" in s.unavailable["nvlinks.replay_errors"].detail


