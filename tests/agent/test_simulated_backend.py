"""The simulated backend: deterministic, clock-driven, and faithful to what NVML reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from agent.gpu.backend import GpuBackend
from agent.gpu.sim_profiles import (
    CLOCK_EVENT_HW_THERMAL_SLOWDOWN,
    DRIVER_VERSION,
    FABRIC_HEALTH_MASK_HEALTHY,
    FABRIC_STATE_COMPLETED,
    FABRIC_STATE_IN_PROGRESS,
    fabric_health_mask_with,
)
from agent.gpu.simulated import (
    FaultKind,
    SimFault,
    SimulatedBackend,
    build_simulated_backend,
    parse_sim_spec,
)
from agent.model import NVLINK5_COUNTERS, GpuSample, ReadStatus
from gpufleet_common.clock import FakeClock


def make(spec: str, clock: FakeClock) -> SimulatedBackend:
    return build_simulated_backend(parse_sim_spec(spec), None, clock)


def sweep(backend: SimulatedBackend) -> list[GpuSample]:
    return [d.sample() for d in backend.devices()]


def test_is_a_gpu_backend() -> None:
    backend: GpuBackend = make("h100_sxm", FakeClock())
    assert [d.index for d in backend.devices()] == list(range(8))
    system = backend.system()
    assert (system.driver_version, system.cuda_driver_version, system.gpu_count) == (
        DRIVER_VERSION,
        "13.0",
        8,
    )
    backend.close()


def _script(backend: SimulatedBackend, clock: FakeClock) -> list[object]:
    """A fixed sequence of loads and reads; returns everything read."""
    out: list[object] = []
    for step, load in enumerate((0.0, 0.3, 0.3, 1.0, 0.6, 0.0)):
        backend.set_load(load)
        clock.advance(7.5 + step)
        out += [*sweep(backend), backend.host_sample(), backend.drain_xid_events()]
    return out


def test_same_seed_gives_identical_samples() -> None:
    spec = "h100_sxm:seed=7,fault=ecc_dbe@gpu3+10s,fault=thermal_slowdown@gpu1+20s"
    first, second = FakeClock(), FakeClock()
    assert _script(make(spec, first), first) == _script(make(spec, second), second)


def test_readings_do_not_depend_on_how_often_they_are_taken() -> None:
    often, once = FakeClock(), FakeClock()
    a, b = make("gb300:seed=3", often), make("gb300:seed=3", once)
    for _ in range(40):
        often.advance(0.25)
        sweep(a)
    once.advance(10.0)
    assert sweep(a) == sweep(b)


def test_different_seeds_and_gpus_differ() -> None:
    clock = FakeClock()
    a, b = sweep(make("h100_sxm:seed=1", clock)), sweep(make("h100_sxm:seed=2", clock))
    assert len({s.uuid for s in a + b}) == 16
    assert len({s.serial for s in a}) == 8
    assert [s.power_w for s in a] != [s.power_w for s in b]


def test_counters_are_monotonic_under_changing_load_and_faults() -> None:
    clock = FakeClock()
    backend = make(
        "h100_sxm:fault=thermal_slowdown@gpu0+20s;duration=30,fault=pcie_replay@gpu1+5s;rate=90,"
        "fault=nvlink_errors@gpu2+5s;rate=3,fault=ecc_dbe@gpu3+40s",
        clock,
    )
    counters: Callable[[GpuSample], tuple[int, ...]] = lambda s: (  # noqa: E731
        s.energy_mj or 0,
        s.thermal_violation_ns or 0,
        s.power_violation_ns or 0,
        s.pcie_replay_count or 0,
        s.ecc_sbe_aggregate or 0,
        s.ecc_dbe_aggregate or 0,
        sum(link.replay_errors or 0 for link in s.nvlinks or ()),
    )
    previous = [counters(s) for s in sweep(backend)]
    for step in range(120):
        if step % 17 == 0:
            backend.set_load((step * 7 % 11) / 10)
        clock.advance(0.7)
        now = [counters(s) for s in sweep(backend)]
        for before, after in zip(previous, now, strict=True):
            assert all(b <= a for b, a in zip(before, after, strict=True)), (step, before, after)
        previous = now
    grown = [counters(s) for s in sweep(backend)]
    assert grown[0][1] == 30 * 10**9  # thermal violation: exactly the 30 s of slowdown
    assert grown[1][3] >= 90 * 70 // 60  # ~1.5 replays a second for ~79 s


@pytest.mark.parametrize("sku", ["h100_sxm", "gb300"])
def test_energy_is_the_integral_of_power(sku: str) -> None:
    clock = FakeClock()
    backend = make(sku, clock)
    device = backend.devices()[0]
    start = device.sample()
    integral, dt = 0.0, 0.05
    previous_power = start.power_w or 0.0
    for step in range(1200):  # 60 s, with a load change halfway
        if step == 600:
            backend.set_load(0.8)
        clock.advance(dt)
        power = device.sample().power_w or 0.0
        integral += (previous_power + power) / 2 * dt
        previous_power = power
    end = device.sample()
    assert end.energy_mj is not None and start.energy_mj is not None
    joules = (end.energy_mj - start.energy_mj) / 1000
    assert joules == pytest.approx(integral, rel=2e-3)


@pytest.mark.parametrize("sku", ["h100_sxm", "gb300"])
def test_power_and_temperature_follow_load(sku: str) -> None:
    clock = FakeClock()
    backend = make(sku, clock)
    idle = sweep(backend)
    backend.set_load(1.0)
    clock.advance(600)  # many thermal time constants
    busy = sweep(backend)
    for i, b in zip(idle, busy, strict=True):
        assert i.power_w is not None and b.power_w is not None and b.power_limit_w is not None
        assert 0 < i.power_w < b.power_w <= b.power_limit_w
        assert i.temperature_c is not None and b.temperature_c is not None
        assert b.temperature_c > i.temperature_c + 15
        assert b.slowdown_temp_c is not None and b.temperature_c < b.slowdown_temp_c
        assert (i.gpu_util_pct, i.clock_event_reasons, i.pcie_gen_current) == (0, 0x1, 1)
        assert b.gpu_util_pct is not None and b.gpu_util_pct > 90
        assert b.pcie_gen_current == b.pcie_gen_max == 5
        assert b.fb_used_mib is not None and i.fb_used_mib is not None
        assert b.fb_used_mib > i.fb_used_mib


def test_load_is_validated() -> None:
    backend = make("h100_sxm", FakeClock())
    with pytest.raises(ValueError, match="between 0 and 1"):
        backend.set_load(1.5)


def test_h100_fields_match_what_nvml_reports() -> None:
    s = make("h100_sxm", FakeClock()).devices()[5].sample()
    assert (s.name, s.power_limit_w, s.slowdown_temp_c, s.shutdown_temp_c) == (
        "NVIDIA H100 80GB HBM3",
        700.0,
        90.0,
        92.0,
    )
    assert (s.pcie_gen_max, s.pcie_width_max, s.pcie_width_current) == (5, 16, 16)
    assert s.nvlinks is not None and len(s.nvlinks) == 18
    assert all(link.up and link.replay_errors == 0 == link.crc_data_errors for link in s.nvlinks)
    assert s.nvlink5_counters is None
    for name in ("nvlink5_counters", "retired_pages_sbe", "retired_pages_dbe"):
        assert s.unavailable[name].status is ReadStatus.NOT_SUPPORTED
        assert getattr(s, name) is None
    assert s.fabric is not None and s.fabric.state == 0  # NVML: state NOT_SUPPORTED
    assert (s.remap_pending, s.remap_failure, s.ecc_dbe_volatile, s.recovery_action) == (
        False,
        False,
        0,
        0,
    )
    assert s.uuid is not None and s.uuid.startswith("GPU-")
    assert not s.lost


def test_gb300_fields_match_what_nvml_reports() -> None:
    backend = make("gb300:nodes=2", FakeClock())
    s = backend.devices()[2].sample()
    assert (s.name, s.power_limit_w) == ("NVIDIA GB300", 1400.0)
    assert len(backend.devices()) == 4
    assert s.nvlink5_counters == dict.fromkeys(NVLINK5_COUNTERS, 0)
    assert s.nvlinks is not None and len(s.nvlinks) == 18
    assert all(link.up and link.replay_errors is None for link in s.nvlinks)
    assert s.unavailable["nvlinks.replay_errors"].status is ReadStatus.NOT_SUPPORTED
    assert "nvlink5_counters" not in s.unavailable
    assert s.fabric is not None
    topo = backend.topology()
    assert (s.fabric.state, s.fabric.status, s.fabric.health_mask) == (
        FABRIC_STATE_COMPLETED,
        0,
        FABRIC_HEALTH_MASK_HEALTHY,
    )
    assert topo.nvlink_domain == f"{s.fabric.cluster_uuid}/{s.fabric.clique_id}"
    assert (topo.gpus, topo.tray, topo.cluster_uuid) == (4, 0, s.fabric.cluster_uuid)


def _fault_free_twin(spec: str, clock: FakeClock) -> SimulatedBackend:
    """The same node (same seed) without any of the spec's faults."""
    sku, _, rest = spec.partition(":")
    kept = [item for item in rest.split(",") if item and not item.startswith("fault=")]
    return make(":".join([sku, ",".join(kept)]) if kept else sku, clock)


def _lost(s: GpuSample) -> bool:
    return s.lost and s.temperature_c is None and s.uuid is not None and s.energy_mj is None


def _nvlink3_down(s: GpuSample) -> bool:
    return (
        s.nvlinks is not None
        and [link.up for link in s.nvlinks].count(False) == 1
        and (not s.nvlinks[3].up)
    )


def _thermal(s: GpuSample) -> bool:
    assert s.temperature_c is not None and s.slowdown_temp_c is not None
    assert s.shutdown_temp_c is not None and s.clock_event_reasons is not None
    return (
        s.slowdown_temp_c <= s.temperature_c < s.shutdown_temp_c
        and bool(s.clock_event_reasons & CLOCK_EVENT_HW_THERMAL_SLOWDOWN)
        and (s.thermal_violation_ns or 0) > 0
    )


# (spec with one fault on `gpu`, the affected GPU, what its sample shows (None: nothing, an
# event only), the XID it raises)
FAULTS: list[tuple[str, int, Callable[[GpuSample], bool] | None, int | None]] = [
    (
        "h100_sxm:fault=ecc_dbe@gpu3",
        3,
        lambda s: s.ecc_dbe_volatile == 1 == s.ecc_dbe_aggregate and s.remap_pending is True,
        48,
    ),
    ("h100_sxm:fault=ecc_dbe@gpu3;count=4;remap=false", 3,
     lambda s: s.ecc_dbe_volatile == 4 and s.remap_pending is False, 48),
    ("h100_sxm:fault=remap_failure@gpu1", 1, lambda s: s.remap_failure is True, 64),
    ("gb300:fault=remap_pending@gpu2;rows=3", 2,
     lambda s: s.remap_pending is True and s.remapped_rows_uncorrectable == 3, None),
    ("h100_sxm:fault=xid79@gpu6", 6, _lost, 79),
    ("gb300:fault=xid79@gpu0", 0, _lost, 79),
    ("h100_sxm:fault=xid74@gpu2", 2, None, 74),  # an event only: telemetry unchanged
    ("h100_sxm:fault=xid95@gpu2", 2, None, 95),
    ("gb300:fault=xid13@gpu3", 3, None, 13),
    ("h100_sxm:fault=thermal_slowdown@gpu4", 4, _thermal, None),
    ("gb300:fault=thermal_slowdown@gpu1", 1, _thermal, None),
    ("h100_sxm:fault=nvlink_down@gpu2;link=3", 2, _nvlink3_down, None),
    ("gb300:fault=nvlink_down@gpu2;link=3", 2, _nvlink3_down, None),
    ("h100_sxm:fault=nvlink_errors@gpu1;link=7;rate=5", 1,
     lambda s: s.nvlinks is not None and s.nvlinks[7].replay_errors == 50, None),
    ("gb300:fault=nvlink_errors@gpu1;rate=5", 1,
     lambda s: s.nvlink5_counters is not None and s.nvlink5_counters["symbol_errors"] == 50, None),
    ("h100_sxm:fault=pcie_width@gpu5", 5,
     lambda s: (s.pcie_width_current, s.pcie_width_max) == (8, 16), None),
    ("h100_sxm:fault=pcie_replay@gpu5;rate=600", 5, lambda s: (s.pcie_replay_count or 0) >= 100,
     None),
    ("gb300:fault=fabric_incomplete@gpu3", 3,
     lambda s: s.fabric is not None and s.fabric.state == FABRIC_STATE_IN_PROGRESS, None),
    ("gb300:fault=fabric_incomplete@gpu3;health=route_unhealthy", 3,
     lambda s: s.fabric is not None and s.fabric.state == FABRIC_STATE_COMPLETED
     and s.fabric.health_mask == fabric_health_mask_with("route_unhealthy"), None),
    ("h100_sxm:fault=firmware_drift@gpu7;vbios=96.00.01.00.01", 7,
     lambda s: s.vbios_version == "96.00.01.00.01", None),
    ("h100_sxm:fault=recovery_action@gpu0;action=drain_and_reset", 0,
     lambda s: s.recovery_action == 4, 154),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "gpu", "shows", "xid"), FAULTS)
def test_each_fault_shows_on_its_gpu_only(
    spec: str, gpu: int, shows: Callable[[GpuSample], bool] | None, xid: int | None
) -> None:
    clock, twin_clock = FakeClock(), FakeClock()
    backend, twin = make(spec, clock), _fault_free_twin(spec, twin_clock)
    for c in (clock, twin_clock):
        c.advance(10.0)
    faulty, healthy = sweep(backend), sweep(twin)
    if shows is None:
        assert faulty[gpu] == healthy[gpu]
    else:
        assert shows(faulty[gpu])
        assert not shows(healthy[gpu])
    others = [i for i in range(len(faulty)) if i != gpu]
    assert [faulty[i] for i in others] == [healthy[i] for i in others]
    events = backend.drain_xid_events()
    assert [(e.xid, e.gpu, e.source) for e in events] == ([] if xid is None else
                                                         [(xid, gpu, "simulated")])  # fmt: skip
    if xid is not None:
        assert events[0].pci_bus_id == faulty[gpu].pci_bus_id or faulty[gpu].lost
        assert f": {xid}, " in events[0].message
    assert backend.drain_xid_events() == []  # delivered exactly once


def test_node_level_faults() -> None:
    clock = FakeClock()
    backend = make(
        "gb300:fault=firmware_drift;driver=570.172.08,fault=fabric_incomplete;state=1,"
        "fault=ib_port_down@mlx5_2,fault=slow;factor=0.25",
        clock,
    )
    assert backend.system().driver_version == "570.172.08"
    samples = sweep(backend)
    assert {s.vbios_version for s in samples} == {"97.10.2F.00.03"}
    assert {s.fabric.state for s in samples if s.fabric is not None} == {1}
    ports = backend.host_sample().ib_ports
    assert [p.state for p in ports] == ["ACTIVE", "ACTIVE", "DOWN", "ACTIVE"]
    assert ports[2].phys_state == "Polling" and ports[2].counters["link_downed"] == 1
    assert [(f.kind, f.param("factor")) for f in backend.faults() if f.kind is FaultKind.SLOW] == [
        (FaultKind.SLOW, 0.25)
    ]


def test_scripted_faults_fire_only_once_their_time_has_passed() -> None:
    clock = FakeClock()
    backend = make("h100_sxm:fault=xid79@gpu1+30s,fault=ecc_dbe@gpu2+45s", clock)
    wall_start = clock.time()
    clock.advance(29.999)
    assert not backend.devices()[1].sample().lost
    assert backend.drain_xid_events() == [] and backend.faults() == ()
    clock.advance(0.001)
    assert backend.devices()[1].sample().lost
    clock.advance(100.0)  # the DBE at 45 s is read late: still stamped with its own time
    events = backend.drain_xid_events()
    assert [(e.xid, e.gpu, e.timestamp) for e in events] == [
        (79, 1, wall_start + 30.0),
        (48, 2, wall_start + 45.0),
    ]
    assert [f.at for f in backend.faults()] == [30.0, 45.0]
    assert backend.devices()[1].sample().lost  # lost for good
    assert backend.system().gpu_count == 8  # a lost GPU still counts and still appears


def test_lost_gpu_reads_are_all_gpu_lost() -> None:
    backend = make("h100_sxm:fault=xid79@gpu1", FakeClock())
    s = backend.devices()[1].sample()
    missing = [f.name for f in dataclasses.fields(GpuSample) if getattr(s, f.name) is None]
    assert missing and set(missing) == set(s.unavailable)
    assert all(u.status is ReadStatus.GPU_LOST for u in s.unavailable.values())
    assert s.uuid is not None and s.pci_bus_id is not None  # identity was read before


def test_run_time_injection() -> None:
    clock = FakeClock()
    backend = make("h100_sxm", clock)
    clock.advance(5.0)
    backend.inject(SimFault(FaultKind.XID, gpu=2, params={"code": 79}))
    backend.inject(SimFault(FaultKind.ECC_DBE, gpu=0, at=8.0))
    assert backend.devices()[2].sample().lost
    assert backend.devices()[0].sample().ecc_dbe_volatile == 0
    clock.advance(3.0)
    assert backend.devices()[0].sample().ecc_dbe_volatile == 1
    assert [e.xid for e in backend.drain_xid_events()] == [79, 48]


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (SimFault(FaultKind.ECC_DBE, gpu=8), "gpu 8 out of range"),
        (SimFault(FaultKind.FABRIC_INCOMPLETE), "does not apply"),
        (SimFault(FaultKind.XID, gpu=0, node="h100-n005", params={"code": 79}), "h100-n005"),
        (SimFault(FaultKind.XID, gpu=0), "needs code="),
    ],
)
def test_bad_injections_are_refused(fault: SimFault, needle: str) -> None:
    backend = make("h100_sxm", FakeClock())
    with pytest.raises(ValueError, match=needle):
        backend.inject(fault)
    assert backend.faults() == ()


def test_thermal_slowdown_with_duration_recovers() -> None:
    clock = FakeClock()
    backend = make("h100_sxm:load=0.5,fault=thermal_slowdown@gpu0+10s;duration=20", clock)
    device = backend.devices()[0]
    clock.advance(15.0)
    hot = device.sample()
    assert _thermal(hot)
    clock.advance(20.0)  # 5 s after it ended
    cooling = device.sample()
    clock.advance(300.0)
    cool = device.sample()
    assert cooling.thermal_violation_ns == cool.thermal_violation_ns == 20 * 10**9
    assert cooling.clock_event_reasons is not None
    assert not cooling.clock_event_reasons & CLOCK_EVENT_HW_THERMAL_SLOWDOWN
    assert hot.temperature_c is not None and cooling.temperature_c is not None
    assert cool.temperature_c is not None
    assert hot.temperature_c > cooling.temperature_c > cool.temperature_c


def test_repair_clears_faults_but_keeps_history() -> None:
    clock = FakeClock()
    backend = make("h100_sxm:fault=xid79@gpu1,fault=ecc_dbe@gpu2,fault=ib_port_down@mlx5_0", clock)
    before = sweep(backend)
    backend.repair()
    clock.advance(1.0)
    after = sweep(backend)
    assert not after[1].lost and after[2].ecc_dbe_volatile == 0 and not after[2].remap_pending
    assert after[2].ecc_dbe_aggregate == before[2].ecc_dbe_aggregate == 1
    assert (after[0].energy_mj or 0) > (before[0].energy_mj or 0)
    assert backend.host_sample().ib_ports[0].state == "ACTIVE"


@pytest.mark.parametrize(("sku", "rails", "rate"), [("h100_sxm", 8, 400.0), ("gb300", 4, 800.0)])
def test_host_sample(sku: str, rails: int, rate: float) -> None:
    clock = FakeClock()
    backend = make(sku, clock)
    idle = backend.host_sample()
    backend.set_load(1.0)
    busy = backend.host_sample()
    assert [p.device for p in idle.ib_ports] == [f"mlx5_{r}" for r in range(rails)]
    assert {(p.state, p.phys_state, p.rate_gbps) for p in idle.ib_ports} == {
        ("ACTIVE", "LinkUp", rate)
    }
    assert dict(idle.rails) == {g: f"mlx5_{g}/1" for g in range(rails)}
    assert idle.services and all(idle.services.values())
    assert idle.mem_total_bytes is not None and idle.mem_available_bytes is not None
    assert busy.mem_available_bytes is not None and busy.load1 is not None
    assert idle.load1 is not None and busy.load1 > idle.load1
    assert busy.mem_available_bytes < idle.mem_available_bytes < idle.mem_total_bytes
    assert backend.topology().rails == idle.rails
