"""gpufleet's per-GPU families: what dcgm-exporter does not show but the checks judge on
(loss, recovery action, remap state, NVLink link state and per-link errors, fabric state),
plus one series per reading that could not be taken."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import Metric

from agent.exporter.families import Family, Kind, Spec, Value, label
from agent.model import GpuSample, NodeSample, Unavailable

GpuGetter = Callable[[GpuSample], Value]


def _gauge(name: str, help_text: str) -> Spec:
    return Spec(name, Kind.GAUGE, help_text, ("gpu",))


# Scalar per-GPU gauges: (spec, reading). A None reading emits nothing.
GPU_SCALARS: tuple[tuple[Spec, GpuGetter], ...] = (
    (_gauge("gpufleet_gpu_lost", "1 when the GPU fell off the bus (NVML: GPU is lost)."),
     lambda g: g.lost),
    (_gauge("gpufleet_gpu_recovery_action",
            "NVML_GPU_RECOVERY_ACTION_* the driver asks for (0 none, 1 reset, 2 reboot, "
            "3 drain P2P, 4 drain and reset)."), lambda g: g.recovery_action),
    (_gauge("gpufleet_gpu_remap_pending", "1 when a row remap waits for a GPU reset."),
     lambda g: g.remap_pending),
    (_gauge("gpufleet_gpu_memory_unrepairable", "1 when NVML flags the memory unrepairable."),
     lambda g: g.memory_unrepairable),
    (_gauge("gpufleet_gpu_clock_event_reasons", "nvmlClocksEventReason bitmask now active."),
     lambda g: g.clock_event_reasons),
    (_gauge("gpufleet_gpu_slowdown_temperature_celsius", "Temperature at which clocks slow."),
     lambda g: g.slowdown_temp_c),
    (_gauge("gpufleet_gpu_power_limit_watts", "Enforced power limit."),
     lambda g: g.power_limit_w),
    (_gauge("gpufleet_gpu_persistence_mode", "1 when persistence mode is on."),
     lambda g: g.persistence_mode),
)  # fmt: skip

GPU_INFO_LABELS = (
    "gpu", "uuid", "name", "serial", "pci_bus_id", "board_part_number", "vbios_version",
    "inforom_image_version",
)  # fmt: skip
GPU_INFO = Spec("gpufleet_gpu_info", Kind.GAUGE, "GPU identity and firmware (value 1).",
                GPU_INFO_LABELS)  # fmt: skip
PCIE_GEN = Spec("gpufleet_gpu_pcie_link_gen", Kind.GAUGE,
                "PCIe generation, current and max.", ("gpu", "kind"))  # fmt: skip
PCIE_WIDTH = Spec("gpufleet_gpu_pcie_link_width", Kind.GAUGE,
                  "PCIe lanes, current and max.", ("gpu", "kind"))  # fmt: skip
NVLINK_UP = Spec("gpufleet_nvlink_up", Kind.GAUGE, "1 when the NVLink is up.", ("gpu", "link"))
NVLINK_ERRORS = Spec(
    "gpufleet_nvlink_errors_total", Kind.COUNTER,
    "Per-link NVLink error counters (replay, recovery, crc_flit, crc_data).",
    ("gpu", "link", "counter"),
)  # fmt: skip
NVLINK5 = Spec(
    "gpufleet_nvlink5_events_total", Kind.COUNTER,
    "Blackwell NVLink field counters, summed over links.", ("gpu", "counter"),
)  # fmt: skip
FABRIC_STATE = _gauge(
    "gpufleet_gpu_fabric_state",
    "NVML_GPU_FABRIC_STATE_*: 0 unsupported, 1 not started, 2 in progress, 3 completed.",
)
FABRIC_STATUS = _gauge(
    "gpufleet_gpu_fabric_status",
    "nvmlReturn_t of fabric registration (0 success); valid when state is 3.",
)
FABRIC_HEALTH_MASK = _gauge("gpufleet_gpu_fabric_health_mask", "Fabric health mask bits.")
FABRIC_HEALTH_SUMMARY = _gauge(
    "gpufleet_gpu_fabric_health", "NVML_GPU_FABRIC_HEALTH_SUMMARY_* (v3 fabric info only)."
)
FABRIC_INFO = Spec("gpufleet_gpu_fabric_info", Kind.GAUGE,
                   "NVLink domain membership: cluster UUID and clique (value 1).",
                   ("gpu", "cluster_uuid", "clique_id"))  # fmt: skip
UNAVAILABLE = Spec(
    "gpufleet_reading_unavailable", Kind.GAUGE,
    "1 per reading that could not be taken (scope gpu|system|host; status not_supported, "
    "error or gpu_lost).", ("scope", "gpu", "field", "status"),
)  # fmt: skip
_NVLINK_COUNTERS = {
    "replay": "replay_errors",
    "recovery": "recovery_errors",
    "crc_flit": "crc_flit_errors",
    "crc_data": "crc_data_errors",
}
_STRUCTURED: tuple[Spec, ...] = (
    GPU_INFO, PCIE_GEN, PCIE_WIDTH, NVLINK_UP, NVLINK_ERRORS, NVLINK5, FABRIC_STATE,
    FABRIC_STATUS, FABRIC_HEALTH_MASK, FABRIC_HEALTH_SUMMARY, FABRIC_INFO, UNAVAILABLE,
)  # fmt: skip
GPU_SPECS: tuple[Spec, ...] = (*(spec for spec, _ in GPU_SCALARS), *_STRUCTURED)


def gpu_families(sample: NodeSample) -> list[Metric]:
    """All per-GPU gpufleet families for one sweep."""
    scalars = [(Family(spec), read) for spec, read in GPU_SCALARS]
    fam = {spec.name: Family(spec) for spec in _STRUCTURED}
    for gpu in sample.gpus:
        idx = str(gpu.index)
        for family, read in scalars:
            family.add([idx], read(gpu))
        fam[GPU_INFO.name].add(
            [idx, *(label(getattr(gpu, name)) for name in GPU_INFO_LABELS[1:])], 1
        )
        for kind, gen, width in (
            ("current", gpu.pcie_gen_current, gpu.pcie_width_current),
            ("max", gpu.pcie_gen_max, gpu.pcie_width_max),
        ):
            fam[PCIE_GEN.name].add([idx, kind], gen)
            fam[PCIE_WIDTH.name].add([idx, kind], width)
        for link in gpu.nvlinks or ():
            fam[NVLINK_UP.name].add([idx, str(link.link)], link.up)
            for counter, attr in _NVLINK_COUNTERS.items():
                fam[NVLINK_ERRORS.name].add([idx, str(link.link), counter], getattr(link, attr))
        for counter, value in sorted((gpu.nvlink5_counters or {}).items()):
            fam[NVLINK5.name].add([idx, counter], value)
        if gpu.fabric is not None:
            fab = gpu.fabric
            fam[FABRIC_STATE.name].add([idx], fab.state)
            fam[FABRIC_STATUS.name].add([idx], fab.status if fab.state == 3 else None)
            fam[FABRIC_HEALTH_MASK.name].add([idx], fab.health_mask)
            fam[FABRIC_HEALTH_SUMMARY.name].add([idx], fab.health_summary)
            fam[FABRIC_INFO.name].add([idx, fab.cluster_uuid, str(fab.clique_id)], 1)
    unavailable = fam[UNAVAILABLE.name]
    for scope, gpu_label, field, entry in _unavailable(sample):
        unavailable.add([scope, gpu_label, field, entry.status.value], 1)
    return [f.metric for f, _ in scalars] + [f.metric for f in fam.values()]


def _unavailable(sample: NodeSample) -> Iterator[tuple[str, str, str, Unavailable]]:
    sources: list[tuple[str, str, Mapping[str, Unavailable]]] = [
        ("gpu", str(g.index), g.unavailable) for g in sample.gpus
    ]
    sources.append(("system", "", sample.system.unavailable))
    if sample.host is not None:
        sources.append(("host", "", sample.host.unavailable))
    for scope, gpu_label, entries in sources:
        for field, entry in sorted(entries.items()):
            yield scope, gpu_label, field, entry
