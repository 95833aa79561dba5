"""Builders for NodeSamples in tests: a healthy node of a SKU, then targeted changes.

    sample = healthy_node("h100_sxm")                      # 8 healthy H100 SXM GPUs + host
    sample = with_gpu(sample, 3, ecc_dbe_volatile=2)       # one GPU changed
    sample = with_unavailable(sample, 3, "power_w")        # a failed read (ERROR)
    later_sample = later(sample, 60.0, pcie_replay_count=500)  # 60 s on, every GPU changed

Every builder returns a new frozen sample; nothing is mutated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from agent.model import (
    NVLINK5_COUNTERS,
    Action,
    FabricInfo,
    Finding,
    GpuSample,
    HostSample,
    IbPort,
    NodeSample,
    NvLinkSample,
    ReadStatus,
    Severity,
    SystemInfo,
    Unavailable,
    XidEvent,
)

H100_NAME = "NVIDIA H100 80GB HBM3"
GB300_NAME = "NVIDIA GB300"
# Every 2-bit problem flag FALSE (2), incorrect configuration NONE (1).
HEALTHY_FABRIC_MASK = sum(2 << shift for shift in (0, 2, 4, 6)) + (1 << 8)
CLUSTER_UUID = "5f1c9a2e-7b3d-4e8f-a0b1-c2d3e4f5a6b7"

_SKUS: Mapping[str, Mapping[str, Any]] = {
    "h100_sxm": {
        "gpus": 8,
        "name": H100_NAME,
        "slowdown": 90.0,
        "shutdown": 92.0,
        "power_limit": 700.0,
        "ib_rate": 400.0,
        "vbios": "96.00.A5.00.01",
    },
    "gb300": {
        "gpus": 4,
        "name": GB300_NAME,
        "slowdown": 88.0,
        "shutdown": 93.0,
        "power_limit": 1400.0,
        "ib_rate": 800.0,
        "vbios": "97.10.4A.00.06",
    },
}

NOT_SUPPORTED = Unavailable(ReadStatus.NOT_SUPPORTED, "NVML_ERROR_NOT_SUPPORTED")
# GpuSample fields that hold readings (everything but the index and the unavailable map).
READING_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(GpuSample) if f.name not in ("index", "unavailable")
)


def healthy_gpu(index: int, sku: str = "h100_sxm") -> GpuSample:
    """One healthy GPU of `sku` ("h100_sxm" or "gb300") as the NVML backend would read it."""
    spec = _SKUS[sku]
    blackwell = sku == "gb300"
    nvlinks = tuple(
        NvLinkSample(link=n, up=True)
        if blackwell
        else NvLinkSample(
            n, True, replay_errors=0, recovery_errors=0, crc_flit_errors=0, crc_data_errors=0
        )
        for n in range(18)
    )
    unavailable = {name: NOT_SUPPORTED for name in _unsupported(blackwell)}
    return GpuSample(
        index=index,
        uuid=f"GPU-{sku}-{index:04d}",
        name=spec["name"],
        serial=f"16523{index:08d}",
        board_part_number="699-TEST",
        pci_bus_id=f"00000000:{0x18 + 0x10 * index:02X}:00.0",
        minor_number=index,
        vbios_version=spec["vbios"],
        persistence_mode=True,
        temperature_c=35.0,
        slowdown_temp_c=spec["slowdown"],
        shutdown_temp_c=spec["shutdown"],
        memory_temp_c=42.0,
        power_w=90.0,
        power_limit_w=spec["power_limit"],
        energy_mj=1_000_000,
        sm_clock_mhz=345.0,
        mem_clock_mhz=2619.0,
        clock_event_reasons=0x1,  # GPU idle
        thermal_violation_ns=0,
        power_violation_ns=0,
        gpu_util_pct=0.0,
        ecc_sbe_volatile=0,
        ecc_dbe_volatile=0,
        ecc_sbe_aggregate=0,
        ecc_dbe_aggregate=0,
        remapped_rows_correctable=0,
        remapped_rows_uncorrectable=0,
        remap_pending=False,
        remap_failure=False,
        memory_unrepairable=False,
        recovery_action=0,
        nvlinks=nvlinks,
        nvlink5_counters=dict.fromkeys(NVLINK5_COUNTERS, 0) if blackwell else None,
        pcie_gen_current=5,
        pcie_gen_max=5,
        pcie_width_current=16,
        pcie_width_max=16,
        pcie_replay_count=0,
        fabric=FabricInfo(3, 0, CLUSTER_UUID, 1, HEALTHY_FABRIC_MASK)
        if blackwell
        else FabricInfo(0, 0, "", 0, 0),
        unavailable=unavailable,
    )


def _unsupported(blackwell: bool) -> tuple[str, ...]:
    retired = ("retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending")
    return retired if blackwell else (*retired, "nvlink5_counters")


def ib_port(device: str, port: int = 1, rate_gbps: float = 400.0, **fields: Any) -> IbPort:
    """A healthy ACTIVE/LinkUp InfiniBand port with zero error counters."""
    base = IbPort(
        device=device,
        port=port,
        state="ACTIVE",
        phys_state="LinkUp",
        rate_gbps=rate_gbps,
        link_layer="InfiniBand",
        counters={"symbol_error": 0, "link_downed": 0, "port_rcv_errors": 0},
    )
    return dataclasses.replace(base, **fields)


def healthy_host(sku: str = "h100_sxm", gpus: int | None = None) -> HostSample:
    """A healthy host for `sku`: one IB rail per GPU at the SKU's rate, plenty of RAM and disk."""
    spec = _SKUS[sku]
    count = spec["gpus"] if gpus is None else gpus
    return HostSample(
        mem_total_bytes=2 * 1024**4,
        mem_available_bytes=1800 * 1024**3,
        load1=12.0,
        cpu_count=224,
        disks={"/": 0.31, "/scratch": 0.42},
        services={"nvidia-persistenced": True},
        ib_ports=tuple(ib_port(f"mlx5_{n}", rate_gbps=spec["ib_rate"]) for n in range(count)),
        rails={n: f"mlx5_{n}/1" for n in range(count)},
    )


def healthy_node(
    sku: str = "h100_sxm",
    gpus: int | None = None,
    *,
    hostname: str = "node-001",
    monotonic: float = 1000.0,
    timestamp: float = 1_700_000_000.0,
    host: bool = True,
    **gpu_overrides: Any,
) -> NodeSample:
    """A healthy node: H100 SXM (8 GPUs) or GB300 (4 GPUs); `gpu_overrides` apply to every GPU."""
    count = _SKUS[sku]["gpus"] if gpus is None else gpus
    gpu_samples = tuple(
        dataclasses.replace(healthy_gpu(i, sku), **gpu_overrides) for i in range(count)
    )
    return NodeSample(
        hostname=hostname,
        timestamp=timestamp,
        monotonic=monotonic,
        system=SystemInfo("580.95.05", "13.0", "13.580.95.05", gpu_count=count),
        gpus=gpu_samples,
        host=healthy_host(sku, count) if host else None,
    )


def with_gpu(sample: NodeSample, index: int, **fields: Any) -> NodeSample:
    """`sample` with GPU `index` changed by `fields`."""
    gpus = tuple(dataclasses.replace(g, **fields) if g.index == index else g for g in sample.gpus)
    return dataclasses.replace(sample, gpus=gpus)


def with_unavailable(
    sample: NodeSample,
    index: int,
    *fields: str,
    status: ReadStatus = ReadStatus.ERROR,
    detail: str = "NVML_ERROR_UNKNOWN",
) -> NodeSample:
    """`sample` where GPU `index` could not read `fields` (set to None, explained)."""
    gpu = next(g for g in sample.gpus if g.index == index)
    unavailable = {**gpu.unavailable, **{f: Unavailable(status, detail) for f in fields}}
    return with_gpu(sample, index, unavailable=unavailable, **dict.fromkeys(fields))


def with_lost_gpu(sample: NodeSample, index: int) -> NodeSample:
    """`sample` where GPU `index` fell off the bus: every reading GPU_LOST."""
    readings = tuple(f for f in READING_FIELDS if f not in ("uuid", "name", "pci_bus_id"))
    return with_unavailable(
        sample, index, *readings, status=ReadStatus.GPU_LOST, detail="NVML_ERROR_GPU_IS_LOST"
    )


def with_nvlink(sample: NodeSample, index: int, link: int, **fields: Any) -> NodeSample:
    """`sample` with one NVLink of GPU `index` changed."""
    gpu = next(g for g in sample.gpus if g.index == index)
    assert gpu.nvlinks is not None
    links = tuple(dataclasses.replace(n, **fields) if n.link == link else n for n in gpu.nvlinks)
    return with_gpu(sample, index, nvlinks=links)


def with_nvlink5(sample: NodeSample, index: int, **counters: int) -> NodeSample:
    """`sample` with some NVLink5 counters of GPU `index` set."""
    gpu = next(g for g in sample.gpus if g.index == index)
    return with_gpu(sample, index, nvlink5_counters={**(gpu.nvlink5_counters or {}), **counters})


def with_host(sample: NodeSample, **fields: Any) -> NodeSample:
    """`sample` with its host sample changed by `fields`."""
    assert sample.host is not None
    return dataclasses.replace(sample, host=dataclasses.replace(sample.host, **fields))


def with_ib_port(sample: NodeSample, device: str, **fields: Any) -> NodeSample:
    """`sample` with the host's IB port `device` changed."""
    assert sample.host is not None
    ports = tuple(
        dataclasses.replace(p, **fields) if p.device == device else p for p in sample.host.ib_ports
    )
    return with_host(sample, ib_ports=ports)


def with_xids(sample: NodeSample, *events: XidEvent) -> NodeSample:
    """`sample` with these XID events arrived since the previous sweep."""
    return dataclasses.replace(sample, xid_events=(*sample.xid_events, *events))


def xid(code: int, gpu: int | None = 0, **fields: Any) -> XidEvent:
    """An XID event on GPU `gpu`."""
    return XidEvent(xid=code, timestamp=fields.pop("timestamp", 1_700_000_000.0), gpu=gpu, **fields)


def later(sample: NodeSample, seconds: float, **gpu_fields: Any) -> NodeSample:
    """The next sweep `seconds` later: clocks advanced, no new XIDs, every GPU changed by fields."""
    gpus = tuple(dataclasses.replace(g, **gpu_fields) for g in sample.gpus)
    return dataclasses.replace(
        sample,
        timestamp=sample.timestamp + seconds,
        monotonic=sample.monotonic + seconds,
        gpus=gpus,
        xid_events=(),
    )


def without_readings(sample: NodeSample, fields: Iterable[str] = READING_FIELDS) -> NodeSample:
    """`sample` where every GPU reports NOT_SUPPORTED for every field of `fields`."""
    for gpu in sample.gpus:
        sample = with_unavailable(
            sample, gpu.index, *fields, status=ReadStatus.NOT_SUPPORTED, detail="not supported"
        )
    return sample


FindingKey = tuple[str, Severity, int | None, Action]


def keys(findings: Iterable[Finding]) -> set[FindingKey]:
    """(check, severity, gpu, action) of each finding, for table-driven asserts."""
    return {(f.check, f.severity, f.gpu, f.action) for f in findings}
