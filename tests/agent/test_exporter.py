"""The exporter's collector: dcgm-exporter names/labels, gpufleet families, XID bookkeeping.

Reports are built here (`hgx_report`), independent of the checks and the simulator.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.exporter import METRIC_NAMES, NodeCollector, XidCounter
from agent.exporter.xid import OTHER
from agent.model import (
    Action,
    FabricInfo,
    Finding,
    GpuSample,
    HostSample,
    IbPort,
    NodeReport,
    NodeSample,
    NvLinkSample,
    ReadStatus,
    Severity,
    SystemInfo,
    Unavailable,
    XidEvent,
)

HOST = "gpu-node-017"
DRIVER = "570.124.06"
T0 = 1_760_000_000.0


def h100(index: int, **changes: Any) -> GpuSample:
    """An H100 SXM with every reading present; values differ per GPU so mix-ups show."""
    links = tuple(
        NvLinkSample(link=n, up=True, replay_errors=n, recovery_errors=0,
                     crc_flit_errors=2 * n, crc_data_errors=1)
        for n in range(18)
    )  # fmt: skip
    gpu = GpuSample(
        index=index,
        uuid=f"GPU-0000{index}-aaaa-bbbb-cccc-{index:012d}",
        name="NVIDIA H100 80GB HBM3",
        serial=f"165{index:010d}",
        board_part_number="692-2G520-0200-000",
        pci_bus_id=f"00000000:{0x15 + 0x20 * index:02X}:00.0",
        minor_number=index,
        vbios_version="96.00.99.00.01",
        inforom_image_version="G520.0200.00.05",
        persistence_mode=True,
        temperature_c=40.0 + index,
        slowdown_temp_c=87.0,
        memory_temp_c=50.0 + index,
        power_w=300.0 + index,
        power_limit_w=700.0,
        energy_mj=9_000_000_000 + index,
        sm_clock_mhz=1980.0,
        mem_clock_mhz=2619.0,
        clock_event_reasons=0,
        thermal_violation_ns=1000 * index,
        power_violation_ns=2000 * index,
        gpu_util_pct=90.0 + index,
        mem_copy_util_pct=30.0 + index,
        fb_used_mib=70_000.0 + index,
        fb_free_mib=10_000.0 - index,
        fb_reserved_mib=500.0,
        ecc_sbe_volatile=index,
        ecc_dbe_volatile=0,
        ecc_sbe_aggregate=10 + index,
        ecc_dbe_aggregate=0,
        retired_pages_sbe=0,
        retired_pages_dbe=0,
        retired_pages_pending=False,
        remapped_rows_correctable=index,
        remapped_rows_uncorrectable=0,
        remap_pending=False,
        remap_failure=False,
        memory_unrepairable=False,
        recovery_action=0,
        nvlinks=links,
        pcie_gen_current=5,
        pcie_gen_max=5,
        pcie_width_current=16,
        pcie_width_max=16,
        pcie_replay_count=7 * index,
        fabric=FabricInfo(state=3, status=0, cluster_uuid="c0ffee00-0000-0000-0000-000000000001",
                          clique_id=1, health_mask=0, health_summary=1),
    )  # fmt: skip
    return dataclasses.replace(gpu, **changes)


def ib_port(n: int, **changes: Any) -> IbPort:
    port = IbPort(
        device=f"mlx5_{n}", port=1, state="ACTIVE", phys_state="LinkUp", rate_gbps=400.0,
        link_layer="InfiniBand", pci_bus_id=f"0000:{0x16 + 0x20 * n:02x}:00.0",
        numa_node=n // 4,
        counters={"symbol_error": n, "link_downed": 0, "port_xmit_data": 123456789},
    )  # fmt: skip
    return dataclasses.replace(port, **changes)


def hgx_host() -> HostSample:
    ports = [ib_port(n) for n in range(8)]
    ports[3] = ib_port(3, state="DOWN", phys_state="Polling", rate_gbps=10.0)
    ports[5] = ib_port(5, state="", rate_gbps=None)  # state unreadable
    return HostSample(
        mem_total_bytes=2 * 2**40, mem_available_bytes=2**40, load1=12.5, cpu_count=224,
        disks={"/": 0.31, "/scratch": 0.9}, services={"nvidia-fabricmanager": True,
        "nvidia-persistenced": False}, ib_ports=tuple(ports),
        rails={i: f"mlx5_{i}/1" for i in range(8)},
        unavailable={"rails": Unavailable(ReadStatus.ERROR, "gpu9: not a PCI address")},
    )  # fmt: skip


def hgx_report(
    gpus: tuple[GpuSample, ...] | None = None,
    findings: tuple[Finding, ...] = (),
    host: HostSample | None = None,
    timestamp: float = T0,
    xid_events: tuple[XidEvent, ...] = (),
) -> NodeReport:
    sample = NodeSample(
        hostname=HOST,
        timestamp=timestamp,
        monotonic=100.0,
        system=SystemInfo(driver_version=DRIVER, cuda_driver_version="12.8",
                          nvml_version="12.570.124.06", gpu_count=8),
        gpus=gpus if gpus is not None else tuple(h100(i) for i in range(8)),
        xid_events=xid_events,
        host=host if host is not None else hgx_host(),
    )  # fmt: skip
    return NodeReport(sample=sample, findings=findings)


def dcgm_labels(gpu: GpuSample) -> dict[str, str]:
    """The labels dcgm-exporter puts on a GPU series, written out by hand."""
    return {
        "gpu": str(gpu.index),
        "UUID": gpu.uuid or "",
        "pci_bus_id": gpu.pci_bus_id or "",
        "device": f"nvidia{gpu.minor_number}",
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": HOST,
        "hostname": HOST,
        "DCGM_FI_DRIVER_VERSION": DRIVER,
    }


class Exporter:
    """A fresh registry with one collector, and shortcuts to read it."""

    def __init__(
        self,
        describe_xid: Callable[[int], str] | None = None,
        info_labels: dict[str, str] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.xids = XidCounter()
        self.collector = NodeCollector(
            self.registry,
            xids=self.xids,
            version="9.9.9",
            describe_xid=describe_xid,
            info_labels=info_labels,
        )

    def publish(self, report: NodeReport, duration: float | None = 0.012) -> Exporter:
        self.xids.observe(report.sample.xid_events)
        self.collector.publish(report, sweep_duration_s=duration)
        return self

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})

    def series(self, name: str) -> list[dict[str, str]]:
        return [
            dict(s.labels)
            for family in self.registry.collect()
            for s in family.samples
            if s.name == name
        ]

    def text(self) -> str:
        return generate_latest(self.registry).decode()


# (metric, GpuSample attribute) written out independently of the exporter's own table.
DCGM_ATTRS = [
    ("DCGM_FI_DEV_SM_CLOCK", "sm_clock_mhz"),
    ("DCGM_FI_DEV_MEM_CLOCK", "mem_clock_mhz"),
    ("DCGM_FI_DEV_GPU_TEMP", "temperature_c"),
    ("DCGM_FI_DEV_MEMORY_TEMP", "memory_temp_c"),
    ("DCGM_FI_DEV_POWER_USAGE", "power_w"),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "energy_mj"),
    ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "pcie_replay_count"),
    ("DCGM_FI_DEV_GPU_UTIL", "gpu_util_pct"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "mem_copy_util_pct"),
    ("DCGM_FI_DEV_FB_FREE", "fb_free_mib"),
    ("DCGM_FI_DEV_FB_USED", "fb_used_mib"),
    ("DCGM_FI_DEV_FB_RESERVED", "fb_reserved_mib"),
    ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", "remapped_rows_uncorrectable"),
    ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "remapped_rows_correctable"),
    ("DCGM_FI_DEV_ROW_REMAP_FAILURE", "remap_failure"),
    ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "ecc_sbe_volatile"),
    ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc_dbe_volatile"),
    ("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", "ecc_sbe_aggregate"),
    ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "ecc_dbe_aggregate"),
    ("DCGM_FI_DEV_RETIRED_SBE", "retired_pages_sbe"),
    ("DCGM_FI_DEV_RETIRED_DBE", "retired_pages_dbe"),
    ("DCGM_FI_DEV_RETIRED_PENDING", "retired_pages_pending"),
    ("DCGM_FI_DEV_POWER_VIOLATION", "power_violation_ns"),
    ("DCGM_FI_DEV_THERMAL_VIOLATION", "thermal_violation_ns"),
]


@pytest.mark.parametrize(("metric", "attr"), DCGM_ATTRS)
def test_dcgm_metric_carries_the_reading_with_dcgm_labels(metric: str, attr: str) -> None:
    gpus = tuple(h100(i) for i in range(8))
    exp = Exporter().publish(hgx_report(gpus))

    for gpu in gpus:
        assert exp.value(metric, dcgm_labels(gpu)) == float(getattr(gpu, attr)), gpu.index
    assert len(exp.series(metric)) == 8


@pytest.mark.parametrize(("metric", "attr"), DCGM_ATTRS)
def test_a_missing_reading_is_not_emitted(metric: str, attr: str) -> None:
    gpus = (h100(0), h100(1, **{attr: None}))
    exp = Exporter().publish(hgx_report(gpus))

    assert exp.value(metric, dcgm_labels(gpus[1])) is None
    assert exp.value(metric, dcgm_labels(gpus[0])) is not None


def test_nvlink_totals_sum_links_and_vanish_when_a_link_is_unknown() -> None:
    partial = h100(1).nvlinks
    assert partial is not None
    partial = (dataclasses.replace(partial[0], crc_flit_errors=None), *partial[1:])
    gpus = (h100(0), h100(1, nvlinks=partial), h100(2, nvlinks=None))
    exp = Exporter().publish(hgx_report(gpus))
    flit = "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL"

    assert exp.value(flit, dcgm_labels(gpus[0])) == sum(2 * n for n in range(18))
    assert exp.value("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", dcgm_labels(gpus[0])) == 153
    assert exp.value(flit, dcgm_labels(gpus[1])) is None
    assert exp.value("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", dcgm_labels(gpus[1])) == 18
    assert exp.value(flit, dcgm_labels(gpus[2])) is None


def test_unknown_identity_leaves_labels_empty_instead_of_inventing_them() -> None:
    gpu = h100(4, uuid=None, minor_number=None)
    exp = Exporter().publish(hgx_report((gpu,)))

    [labels] = exp.series("DCGM_FI_DEV_GPU_TEMP")
    assert labels["gpu"] == "4"
    assert "UUID" not in labels or labels["UUID"] == ""
    assert labels.get("device", "") == ""


def test_a_lost_gpu_shows_lost_and_no_telemetry() -> None:
    lost = GpuSample(
        index=6, uuid="GPU-6", unavailable={"temperature_c": Unavailable(ReadStatus.GPU_LOST)}
    )
    exp = Exporter().publish(hgx_report((h100(0), lost)))

    assert exp.value("gpufleet_gpu_lost", {"gpu": "6"}) == 1.0
    assert exp.value("gpufleet_gpu_lost", {"gpu": "0"}) == 0.0
    assert [s["gpu"] for s in exp.series("DCGM_FI_DEV_GPU_TEMP")] == ["0"]
    assert (
        exp.value(
            "gpufleet_reading_unavailable",
            {"scope": "gpu", "gpu": "6", "field": "temperature_c", "status": "gpu_lost"},
        )
        == 1.0
    )


def test_xid_errors_show_the_last_xid_and_totals_count_every_event() -> None:
    exp = Exporter(describe_xid=lambda xid: {79: "GPU has fallen off the bus"}.get(xid, "?"))
    first = (
        XidEvent(xid=13, timestamp=T0, gpu=2, message="Graphics SM Warp Exception"),
        XidEvent(xid=13, timestamp=T0 + 1, gpu=2),
        XidEvent(xid=31, timestamp=T0, gpu=None),
    )
    exp.publish(hgx_report(xid_events=first))
    labels = dcgm_labels(h100(2))

    assert exp.value("DCGM_FI_DEV_XID_ERRORS", {**labels, "err_code": "13", "err_msg": "?"}) == 13
    assert exp.value("gpufleet_xid_events_total", {"gpu": "2", "xid": "13"}) == 2
    assert exp.value("gpufleet_xid_events_total", {"gpu": "", "xid": "31"}) == 1
    assert exp.value("DCGM_FI_DEV_XID_ERRORS", dcgm_labels(h100(0))) is None  # none seen

    exp.publish(hgx_report(xid_events=(XidEvent(xid=79, timestamp=T0 + 30, gpu=2),)))
    exp.publish(hgx_report())  # a sweep without XIDs changes nothing
    xid_series = exp.series("DCGM_FI_DEV_XID_ERRORS")
    assert [(s["err_code"], s["err_msg"]) for s in xid_series] == [
        ("79", "GPU has fallen off the bus")
    ]
    assert exp.value("gpufleet_xid_events_total", {"gpu": "2", "xid": "13"}) == 2
    assert exp.value("gpufleet_xid_events_total", {"gpu": "2", "xid": "79"}) == 1


def test_xid_counter_caps_series_but_keeps_totals() -> None:
    xids = XidCounter(max_series=2)
    xids.observe(XidEvent(xid=x, timestamp=T0, gpu=0) for x in (13, 31, 43, 45, 13))

    counts = xids.snapshot().counts
    assert counts == {("0", "13"): 2, ("0", "31"): 1, ("0", OTHER): 2}
    with pytest.raises(ValueError):
        XidCounter(max_series=0)


def test_an_out_of_order_xid_does_not_replace_the_latest() -> None:
    xids = XidCounter()
    xids.observe([XidEvent(xid=79, timestamp=T0 + 10, gpu=1)])
    xids.observe([XidEvent(xid=13, timestamp=T0, gpu=1, source="kmsg")])

    assert xids.snapshot().last["1"].xid == 79


FINDINGS = (
    Finding("xid", Severity.CRITICAL, "XID 79", gpu=3, action=Action.REBOOT_NODE),
    Finding("xid", Severity.CRITICAL, "XID 79 again", gpu=3, action=Action.REBOOT_NODE),
    Finding("temperature", Severity.WARN, "hot", gpu=1),
    Finding("ib_ports", Severity.CRITICAL, "mlx5_3/1 down", action=Action.DRAIN),
    Finding("memory", Severity.OK, "fine", gpu=0),
)


def test_verdict_and_action_are_one_hot() -> None:
    exp = Exporter().publish(hgx_report(findings=FINDINGS))

    verdicts = {s["verdict"]: exp.value("gpufleet_node_verdict", s)
                for s in exp.series("gpufleet_node_verdict")}  # fmt: skip
    actions = {s["action"]: exp.value("gpufleet_node_action", s)
               for s in exp.series("gpufleet_node_action")}  # fmt: skip
    assert verdicts == {"ok": 0, "warn": 0, "unknown": 0, "critical": 1}
    assert actions["reboot_node"] == 1 and sum(v or 0 for v in actions.values()) == 1
    assert set(actions) == {a.value for a in Action}


def test_a_clean_node_is_ok() -> None:
    exp = Exporter().publish(hgx_report())

    assert exp.value("gpufleet_node_verdict", {"verdict": "ok"}) == 1
    assert exp.value("gpufleet_node_action", {"action": "none"}) == 1
    assert exp.series("gpufleet_finding_info") == []


def test_findings_are_counted_and_non_ok_ones_listed_with_their_action() -> None:
    exp = Exporter().publish(hgx_report(findings=FINDINGS))

    count = {"check": "xid", "severity": "critical", "gpu": "3"}
    assert exp.value("gpufleet_findings", count) == 2
    assert exp.value("gpufleet_findings", {"check": "memory", "severity": "ok", "gpu": "0"}) == 1
    node_level = {"check": "ib_ports", "severity": "critical", "gpu": ""}
    assert exp.value("gpufleet_findings", node_level) == 1
    info = sorted(tuple(sorted(s.items())) for s in exp.series("gpufleet_finding_info"))
    assert info == sorted([
        (("action", "reboot_node"), ("check", "xid"), ("gpu", "3"), ("severity", "critical")),
        (("action", "none"), ("check", "temperature"), ("gpu", "1"), ("severity", "warn")),
        (("action", "drain"), ("check", "ib_ports"), ("gpu", ""), ("severity", "critical")),
    ])  # fmt: skip


def test_sweep_timing_and_agent_identity() -> None:
    exp = Exporter(info_labels={"node": "rack7-n17"}).publish(hgx_report(), duration=0.25)

    assert exp.value("gpufleet_sweep_duration_seconds") == 0.25
    assert exp.value("gpufleet_last_sweep_timestamp_seconds") == T0
    assert exp.value("gpufleet_gpus") == 8
    [info] = exp.series("gpufleet_agent_info")
    assert info == {"version": "9.9.9", "hostname": HOST, "driver_version": DRIVER,
                    "cuda_driver_version": "12.8", "nvml_version": "12.570.124.06",
                    "node": "rack7-n17"}  # fmt: skip


def test_before_the_first_sweep_only_identity_is_served() -> None:
    exp = Exporter()

    assert exp.value("gpufleet_agent_info", {
        "version": "9.9.9", "hostname": "", "driver_version": "", "cuda_driver_version": "",
        "nvml_version": "",
    }) == 1  # fmt: skip
    assert exp.series("gpufleet_node_verdict") == []
    assert exp.series("DCGM_FI_DEV_GPU_TEMP") == []


def test_publishing_replaces_the_report_and_its_series() -> None:
    exp = Exporter().publish(hgx_report())
    exp.publish(hgx_report(gpus=(h100(0, temperature_c=83.0),), timestamp=T0 + 5))

    assert [s["gpu"] for s in exp.series("DCGM_FI_DEV_GPU_TEMP")] == ["0"]
    assert exp.value("DCGM_FI_DEV_GPU_TEMP", dcgm_labels(h100(0))) == 83.0
    assert exp.value("gpufleet_last_sweep_timestamp_seconds") == T0 + 5


def test_ib_ports_rails_and_host_facts() -> None:
    exp = Exporter().publish(hgx_report())

    assert exp.value("gpufleet_ib_port_up", {"device": "mlx5_0", "port": "1"}) == 1
    assert exp.value("gpufleet_ib_port_up", {"device": "mlx5_3", "port": "1"}) == 0
    assert exp.value("gpufleet_ib_port_up", {"device": "mlx5_5", "port": "1"}) is None
    assert exp.value("gpufleet_ib_port_rate_gbps", {"device": "mlx5_3", "port": "1"}) == 10
    assert exp.value("gpufleet_ib_port_rate_gbps", {"device": "mlx5_5", "port": "1"}) is None
    err = {"device": "mlx5_6", "port": "1", "counter": "symbol_error"}
    assert exp.value("gpufleet_ib_port_errors_total", err) == 6
    counters = {s["counter"] for s in exp.series("gpufleet_ib_port_errors_total")}
    assert counters == {"symbol_error", "link_downed"}  # data counters are not errors
    assert exp.value("gpufleet_gpu_rail_info", {"gpu": "2", "rail": "mlx5_2/1"}) == 1
    assert exp.value("gpufleet_host_service_up", {"service": "nvidia-persistenced"}) == 0
    assert exp.value("gpufleet_host_disk_used_ratio", {"mount": "/scratch"}) == 0.9
    assert exp.value("gpufleet_host_memory_total_bytes") == 2 * 2**40
    assert exp.value("gpufleet_host_cpus") == 224
    assert exp.value(
        "gpufleet_reading_unavailable",
        {"scope": "host", "gpu": "", "field": "rails", "status": "error"},
    ) == 1  # fmt: skip


def test_nvlink_fabric_and_pcie_families() -> None:
    gb200 = h100(
        0, nvlinks=(NvLinkSample(link=0, up=True), NvLinkSample(link=1, up=False)),
        nvlink5_counters={"link_recovery_failed_events": 0, "link_recovery_successful_events": 2},
        fabric=FabricInfo(state=2, status=5, cluster_uuid="abc", clique_id=7, health_mask=4),
        pcie_width_current=8,
    )  # fmt: skip
    exp = Exporter().publish(hgx_report((gb200, h100(1))))

    assert exp.value("gpufleet_nvlink_up", {"gpu": "0", "link": "1"}) == 0
    assert exp.value("gpufleet_nvlink_errors_total",
                     {"gpu": "1", "link": "5", "counter": "crc_flit"}) == 10  # fmt: skip
    assert exp.value("gpufleet_nvlink_errors_total",
                     {"gpu": "0", "link": "0", "counter": "replay"}) is None  # fmt: skip
    assert exp.value("gpufleet_nvlink5_events_total",
                     {"gpu": "0", "counter": "link_recovery_successful_events"}) == 2  # fmt: skip
    assert exp.value("gpufleet_gpu_fabric_state", {"gpu": "0"}) == 2
    assert exp.value("gpufleet_gpu_fabric_status", {"gpu": "0"}) is None  # only valid at state 3
    assert exp.value("gpufleet_gpu_fabric_status", {"gpu": "1"}) == 0
    assert exp.value("gpufleet_gpu_fabric_health", {"gpu": "0"}) is None
    assert exp.value("gpufleet_gpu_fabric_info",
                     {"gpu": "0", "cluster_uuid": "abc", "clique_id": "7"}) == 1  # fmt: skip
    assert exp.value("gpufleet_gpu_pcie_link_width", {"gpu": "0", "kind": "current"}) == 8
    assert exp.value("gpufleet_gpu_pcie_link_width", {"gpu": "0", "kind": "max"}) == 16


def test_duplicate_series_are_dropped_not_exposed() -> None:
    twice = (NvLinkSample(link=0, up=True), NvLinkSample(link=0, up=False))
    exp = Exporter().publish(hgx_report((h100(0, nvlinks=twice),)))

    assert exp.series("gpufleet_nvlink_up") == [{"gpu": "0", "link": "0"}]
    families = list(text_string_to_metric_families(exp.text()))
    assert families  # the exposition parses


def rich_report() -> NodeReport:
    """A report in which every family has at least one sample."""
    gb200 = h100(8, nvlink5_counters={"link_recovery_failed_events": 1})
    xid = (XidEvent(xid=79, timestamp=T0, gpu=3),)
    return hgx_report(gpus=(*(h100(i) for i in range(8)), gb200), findings=FINDINGS, xid_events=xid)


def test_metric_names_lists_exactly_the_families_emitted() -> None:
    exp = Exporter().publish(rich_report())

    emitted = {s.name for family in exp.registry.collect() for s in family.samples}
    assert emitted == set(METRIC_NAMES)
    assert not [n for n in METRIC_NAMES if n.startswith("DCGM_FI_PROF_")]
    ours = [n for n in METRIC_NAMES if not n.startswith("DCGM_")]
    assert all(n.startswith("gpufleet_") for n in ours)


def test_a_registry_refuses_a_second_collector() -> None:
    registry = CollectorRegistry()
    NodeCollector(registry, xids=XidCounter())

    with pytest.raises(ValueError, match="Duplicated timeseries"):
        NodeCollector(registry, xids=XidCounter())


def test_rendering_an_8_gpu_report_is_cheap() -> None:
    exp = Exporter().publish(hgx_report(findings=FINDINGS))
    exp.text()
    started = time.perf_counter()
    for _ in range(20):
        exp.text()
    per_scrape = (time.perf_counter() - started) / 20

    assert per_scrape < 0.1, f"a scrape took {per_scrape * 1e3:.1f} ms"


def test_hostile_label_text_is_escaped_and_round_trips() -> None:
    odd = 'NVIDIA "H100"\\ 80GB\nHBM3'
    exp = Exporter().publish(hgx_report((h100(0, name=odd),)))

    parsed = [
        s.labels["modelName"]
        for family in text_string_to_metric_families(exp.text())
        for s in family.samples
        if s.name == "DCGM_FI_DEV_GPU_TEMP"
    ]
    assert parsed == [odd]
