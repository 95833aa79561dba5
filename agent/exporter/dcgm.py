"""dcgm-exporter-compatible GPU telemetry: the same metric names, units and labels.

Labels on every series: `gpu`, `UUID`, `pci_bus_id`, `device` ("nvidia<minor>"), `modelName`,
`Hostname` and `hostname` (dcgm-exporter renamed the first to the second after 4.5.3-4.8.2;
both are set so dashboards and alerts of either era match) and `DCGM_FI_DRIVER_VERSION`.

Includes dcgm-exporter's default set where NVML can supply it, plus the health counters its
default CSV leaves commented out (ECC, retired pages, NVLink errors, violation time).
Not exported, because NVML has no such reading: every DCGM_FI_PROF_* field (they need DCGM's
profiling module), NVLINK_BANDWIDTH_TOTAL, ENC/DEC_UTIL and VGPU_LICENSE_STATUS.
dcgm-exporter's counter fields are exposed untyped: their names cannot take the `_total`
suffix that a Prometheus counter must carry, and renaming them would break the dashboards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client.core import Metric

from agent.exporter.families import Family, Kind, Spec, Value, label
from agent.exporter.xid import XidSnapshot
from agent.model import GpuSample, NodeSample

DCGM_LABELS: tuple[str, ...] = (
    "gpu",
    "UUID",
    "pci_bus_id",
    "device",
    "modelName",
    "Hostname",
    "hostname",
    "DCGM_FI_DRIVER_VERSION",
)
Getter = Callable[[GpuSample], Value]


@dataclass(frozen=True, slots=True)
class DcgmField:
    """One DCGM field exported from a GpuSample."""

    spec: Spec
    read: Getter


def _attr(name: str) -> Getter:
    def read(gpu: GpuSample) -> Value:
        value: Value = getattr(gpu, name)
        return value

    return read


def _nvlink_total(counter: str) -> Getter:
    """Sum over links; absent when any link could not report it (a partial sum would lie)."""

    def read(gpu: GpuSample) -> Value:
        if not gpu.nvlinks:
            return None
        values: list[int | None] = [getattr(link, counter) for link in gpu.nvlinks]
        if any(v is None for v in values):
            return None
        return sum(v for v in values if v is not None)

    return read


def _field(name: str, kind: Kind, help_text: str, read: Getter) -> DcgmField:
    return DcgmField(Spec(name, kind, help_text, DCGM_LABELS), read)


G, C = Kind.GAUGE, Kind.UNTYPED
DCGM_FIELDS: tuple[DcgmField, ...] = (
    _field("DCGM_FI_DEV_SM_CLOCK", G, "SM clock frequency (in MHz).", _attr("sm_clock_mhz")),
    _field("DCGM_FI_DEV_MEM_CLOCK", G, "Memory clock frequency (in MHz).", _attr("mem_clock_mhz")),
    _field("DCGM_FI_DEV_GPU_TEMP", G, "GPU temperature (in C).", _attr("temperature_c")),
    _field("DCGM_FI_DEV_MEMORY_TEMP", G, "Memory temperature (in C).", _attr("memory_temp_c")),
    _field("DCGM_FI_DEV_POWER_USAGE", G, "Power draw (in W).", _attr("power_w")),
    _field("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", C,
           "Total energy consumption since boot (in mJ).", _attr("energy_mj")),
    _field("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", C, "Total number of PCIe retries.",
           _attr("pcie_replay_count")),
    _field("DCGM_FI_DEV_GPU_UTIL", G, "GPU utilization (in %).", _attr("gpu_util_pct")),
    _field("DCGM_FI_DEV_MEM_COPY_UTIL", G, "Memory utilization (in %).",
           _attr("mem_copy_util_pct")),
    _field("DCGM_FI_DEV_FB_FREE", G, "Framebuffer memory free (in MiB).", _attr("fb_free_mib")),
    _field("DCGM_FI_DEV_FB_USED", G, "Framebuffer memory used (in MiB).", _attr("fb_used_mib")),
    _field("DCGM_FI_DEV_FB_RESERVED", G, "Framebuffer memory reserved (in MiB).",
           _attr("fb_reserved_mib")),
    _field("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", C,
           "Number of remapped rows for uncorrectable errors",
           _attr("remapped_rows_uncorrectable")),
    _field("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", C,
           "Number of remapped rows for correctable errors", _attr("remapped_rows_correctable")),
    _field("DCGM_FI_DEV_ROW_REMAP_FAILURE", G, "Whether remapping of rows has failed",
           _attr("remap_failure")),
    _field("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", C,
           "Total number of single-bit volatile ECC errors.", _attr("ecc_sbe_volatile")),
    _field("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", C,
           "Total number of double-bit volatile ECC errors.", _attr("ecc_dbe_volatile")),
    _field("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", C,
           "Total number of single-bit persistent ECC errors.", _attr("ecc_sbe_aggregate")),
    _field("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", C,
           "Total number of double-bit persistent ECC errors.", _attr("ecc_dbe_aggregate")),
    _field("DCGM_FI_DEV_RETIRED_SBE", C,
           "Total number of retired pages due to single-bit errors.", _attr("retired_pages_sbe")),
    _field("DCGM_FI_DEV_RETIRED_DBE", C,
           "Total number of retired pages due to double-bit errors.", _attr("retired_pages_dbe")),
    _field("DCGM_FI_DEV_RETIRED_PENDING", C,
           "Whether pages are pending retirement (1) or not (0).",
           _attr("retired_pages_pending")),
    _field("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", C,
           "Total number of NVLink flow-control CRC errors.", _nvlink_total("crc_flit_errors")),
    _field("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", C,
           "Total number of NVLink data CRC errors.", _nvlink_total("crc_data_errors")),
    _field("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", C,
           "Total number of NVLink retries.", _nvlink_total("replay_errors")),
    _field("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", C,
           "Total number of NVLink recovery errors.", _nvlink_total("recovery_errors")),
    _field("DCGM_FI_DEV_POWER_VIOLATION", C,
           "Throttling duration due to power constraints (in ns).", _attr("power_violation_ns")),
    _field("DCGM_FI_DEV_THERMAL_VIOLATION", C,
           "Throttling duration due to thermal constraints (in ns).",
           _attr("thermal_violation_ns")),
)  # fmt: skip

XID_ERRORS = Spec(
    "DCGM_FI_DEV_XID_ERRORS",
    Kind.GAUGE,
    "Value of the last XID error encountered.",
    (*DCGM_LABELS, "err_code", "err_msg"),
)
DCGM_SPECS: tuple[Spec, ...] = (*(f.spec for f in DCGM_FIELDS), XID_ERRORS)

XidDescriber = Callable[[int], str]


def gpu_label_values(gpu: GpuSample, hostname: str, driver_version: str | None) -> list[str]:
    """Values for `DCGM_LABELS`, in order ("" for what could not be read)."""
    device = "" if gpu.minor_number is None else f"nvidia{gpu.minor_number}"
    return [
        str(gpu.index),
        label(gpu.uuid),
        label(gpu.pci_bus_id),
        device,
        label(gpu.name),
        hostname,
        hostname,
        label(driver_version),
    ]


def dcgm_families(
    sample: NodeSample, xids: XidSnapshot, describe_xid: XidDescriber | None = None
) -> list[Metric]:
    """Every DCGM family for one sweep; GPUs whose reading is None simply have no sample."""
    driver = sample.system.driver_version
    labels = [gpu_label_values(g, sample.hostname, driver) for g in sample.gpus]
    out: list[Metric] = []
    for field in DCGM_FIELDS:
        family = Family(field.spec)
        for gpu, values in zip(sample.gpus, labels, strict=True):
            family.add(values, field.read(gpu))
        out.append(family.metric)
    out.append(_xid_family(sample.gpus, labels, xids, describe_xid))
    return out


def _xid_family(
    gpus: Sequence[GpuSample],
    labels: Sequence[list[str]],
    xids: XidSnapshot,
    describe_xid: XidDescriber | None,
) -> Metric:
    family = Family(XID_ERRORS)
    for gpu, values in zip(gpus, labels, strict=True):
        last = xids.last.get(str(gpu.index))
        if last is None:
            continue  # no XID seen: nothing to show (never a made-up 0)
        message = describe_xid(last.xid) if describe_xid else last.message
        family.add([*values, str(last.xid), message[:200]], last.xid)
    return family.metric
