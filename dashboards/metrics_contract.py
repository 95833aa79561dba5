"""The metric contract: every series name the dashboards and alert rules may query.

One entry per family, by the name PromQL uses (counters end in `_total`; a histogram is named
by its base, and PromQL reads `_bucket`, `_sum` and `_count`), with its type, labels, help text
and the component that emits it. Where it is served:

- `agent`: each node's `gpufleet-agent run` on `--metrics-listen` (dcgm-exporter's :9400).
- `controller`, `supervisor`, `burnin`: the controller process's `--metrics-listen` (:9401);
  the supervisor loop and the burn-in judge run inside the controller.

`status` says whether the family is emitted today or only proposed here for the lead to
implement exactly as written. Tests hold both sides to it: every agent entry matches
`agent.exporter.names.ALL_SPECS` (name, type, labels) and every emitted controller-side entry
is registered by `controller.metrics.ControllerMetrics`; a proposed entry that starts being
emitted fails a test until its status is flipped here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Component(StrEnum):
    """Who emits a family."""

    AGENT = "agent"
    CONTROLLER = "controller"
    SUPERVISOR = "supervisor"
    BURNIN = "burnin"


class MetricType(StrEnum):
    """Prometheus type as exposed (dcgm-exporter's counters are untyped: no `_total`)."""

    GAUGE = "gauge"
    COUNTER = "counter"
    HISTOGRAM = "histogram"
    UNTYPED = "untyped"


class Status(StrEnum):
    """Emitted today, or proposed here and not implemented yet."""

    EMITTED = "emitted"
    PROPOSED = "proposed"


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One family of the contract."""

    name: str
    type: MetricType
    labels: tuple[str, ...]
    help: str
    component: Component
    status: Status = Status.EMITTED

    def __post_init__(self) -> None:
        if (self.type is MetricType.COUNTER) != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")
        if self.type is MetricType.HISTOGRAM and "le" in self.labels:
            raise ValueError(f"{self.name}: `le` is implied for histograms")

    @property
    def series_names(self) -> tuple[str, ...]:
        """The names PromQL may use for this family."""
        if self.type is MetricType.HISTOGRAM:
            return tuple(self.name + s for s in HISTOGRAM_SUFFIXES)
        return (self.name,)

    def series_labels(self, series_name: str) -> tuple[str, ...]:
        """Labels a series of this family carries (`le` on histogram buckets)."""
        if self.type is MetricType.HISTOGRAM and series_name.endswith("_bucket"):
            return (*self.labels, "le")
        return self.labels


_A, _C, _S, _B = Component.AGENT, Component.CONTROLLER, Component.SUPERVISOR, Component.BURNIN
_G, _CNT, _H, _U = MetricType.GAUGE, MetricType.COUNTER, MetricType.HISTOGRAM, MetricType.UNTYPED
_P = Status.PROPOSED

#: dcgm-exporter's labels on every GPU series (both hostname spellings: dcgm-exporter renamed
#: `Hostname` to `hostname` after 4.5.3-4.8.2; the agent sets both).
DCGM_LABELS: tuple[str, ...] = (
    "gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "hostname",
    "DCGM_FI_DRIVER_VERSION",
)  # fmt: skip
#: Host label spellings dashboards and alerts must accept.
HOST_LABELS: tuple[str, ...] = ("hostname", "Hostname")


def _dcgm(name: str, type_: MetricType, help_text: str) -> MetricDef:
    return MetricDef(name, type_, DCGM_LABELS, help_text, _A)


def _agent(name: str, type_: MetricType, labels: tuple[str, ...], help_text: str) -> MetricDef:
    return MetricDef(name, type_, labels, help_text, _A)


_GPU = ("gpu",)
_PORT = ("device", "port")

AGENT_METRICS: tuple[MetricDef, ...] = (
    # --- dcgm-exporter-compatible GPU telemetry -------------------------------------------
    _dcgm("DCGM_FI_DEV_SM_CLOCK", _G, "SM clock frequency (in MHz)."),
    _dcgm("DCGM_FI_DEV_MEM_CLOCK", _G, "Memory clock frequency (in MHz)."),
    _dcgm("DCGM_FI_DEV_GPU_TEMP", _G, "GPU temperature (in C)."),
    _dcgm("DCGM_FI_DEV_MEMORY_TEMP", _G, "Memory temperature (in C)."),
    _dcgm("DCGM_FI_DEV_POWER_USAGE", _G, "Power draw (in W)."),
    _dcgm("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", _U, "Energy since boot (in mJ)."),
    _dcgm("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", _U, "Total number of PCIe retries."),
    _dcgm("DCGM_FI_DEV_GPU_UTIL", _G, "GPU utilization (in %)."),
    _dcgm("DCGM_FI_DEV_MEM_COPY_UTIL", _G, "Memory utilization (in %)."),
    _dcgm("DCGM_FI_DEV_FB_FREE", _G, "Framebuffer memory free (in MiB)."),
    _dcgm("DCGM_FI_DEV_FB_USED", _G, "Framebuffer memory used (in MiB)."),
    _dcgm("DCGM_FI_DEV_FB_RESERVED", _G, "Framebuffer memory reserved (in MiB)."),
    _dcgm("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", _U, "Rows remapped for uncorrectable errors."),
    _dcgm("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", _U, "Rows remapped for correctable errors."),
    _dcgm("DCGM_FI_DEV_ROW_REMAP_FAILURE", _G, "Whether remapping of rows has failed."),
    _dcgm("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", _U, "Single-bit volatile ECC errors."),
    _dcgm("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", _U, "Double-bit volatile ECC errors."),
    _dcgm("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", _U, "Single-bit persistent ECC errors."),
    _dcgm("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", _U, "Double-bit persistent ECC errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_SBE", _U, "Pages retired for single-bit errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_DBE", _U, "Pages retired for double-bit errors."),
    _dcgm("DCGM_FI_DEV_RETIRED_PENDING", _U, "1 when pages are pending retirement."),
    _dcgm("DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", _U, "NVLink flow-control CRC errors."),
    _dcgm("DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", _U, "NVLink data CRC errors."),
    _dcgm("DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", _U, "NVLink retries."),
    _dcgm("DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", _U, "NVLink recovery errors."),
    _dcgm("DCGM_FI_DEV_POWER_VIOLATION", _U, "Throttling due to power constraints (in ns)."),
    _dcgm("DCGM_FI_DEV_THERMAL_VIOLATION", _U, "Throttling due to thermal constraints (in ns)."),
    MetricDef("DCGM_FI_DEV_XID_ERRORS", _G, (*DCGM_LABELS, "err_code", "err_msg"),
              "Value of the last XID error encountered (not a count).", _A),
    # --- node: identity, verdict, findings, sweeps, XIDs ------------------------------------
    _agent("gpufleet_agent_info", _G,
           ("version", "hostname", "driver_version", "cuda_driver_version", "nvml_version"),
           "The agent and the node's driver stack (value 1); join on `instance` for hostname."),
    _agent("gpufleet_node_verdict", _G, ("verdict",),
           "The node's verdict, one-hot over ok|warn|unknown|critical."),
    _agent("gpufleet_node_action", _G, ("action",),
           "The most escalated action the findings recommend, one-hot."),
    _agent("gpufleet_findings", _G, ("check", "severity", "gpu"),
           "Current findings by check, severity and GPU (gpu empty for node-level findings)."),
    _agent("gpufleet_finding_info", _G, ("check", "severity", "gpu", "action"),
           "One series per current non-OK finding, with its recommended action (value 1)."),
    _agent("gpufleet_gpus", _G, (), "GPUs the driver reports on this node."),
    _agent("gpufleet_sweep_duration_seconds", _G, (), "Duration of the last sweep."),
    _agent("gpufleet_last_sweep_timestamp_seconds", _G, (),
           "Wall-clock time the last judged sweep started."),
    _agent("gpufleet_xid_events_total", _CNT, ("gpu", "xid"),
           "XID events seen since the agent started, per GPU and XID."),
    # --- per GPU ------------------------------------------------------------------------------
    _agent("gpufleet_gpu_lost", _G, _GPU, "1 when the GPU fell off the bus (NVML: GPU is lost)."),
    _agent("gpufleet_gpu_recovery_action", _G, _GPU,
           "Recovery action: 0 none, 1 reset, 2 reboot, 3 drain P2P, 4 drain and reset."),
    _agent("gpufleet_gpu_remap_pending", _G, _GPU, "1 when a row remap waits for a GPU reset."),
    _agent("gpufleet_gpu_memory_unrepairable", _G, _GPU, "1 when memory is unrepairable."),
    _agent("gpufleet_gpu_clock_event_reasons", _G, _GPU, "Active clock-event bitmask."),
    _agent("gpufleet_gpu_slowdown_temperature_celsius", _G, _GPU, "Clock slowdown temp."),
    _agent("gpufleet_gpu_power_limit_watts", _G, _GPU, "Enforced power limit."),
    _agent("gpufleet_gpu_persistence_mode", _G, _GPU, "1 when persistence mode is on."),
    _agent("gpufleet_gpu_info", _G,
           ("gpu", "uuid", "name", "serial", "pci_bus_id", "board_part_number", "vbios_version",
            "inforom_image_version"), "GPU identity and firmware (value 1)."),
    _agent("gpufleet_gpu_pcie_link_gen", _G, ("gpu", "kind"), "PCIe generation, current and max."),
    _agent("gpufleet_gpu_pcie_link_width", _G, ("gpu", "kind"), "PCIe lanes, current and max."),
    _agent("gpufleet_nvlink_up", _G, ("gpu", "link"), "1 when the NVLink is up."),
    _agent("gpufleet_nvlink_errors_total", _CNT, ("gpu", "link", "counter"),
           "Per-link NVLink error counters (replay, recovery, crc_flit, crc_data)."),
    _agent("gpufleet_nvlink5_events_total", _CNT, ("gpu", "counter"),
           "Blackwell NVLink field counters, summed over links."),
    _agent("gpufleet_gpu_fabric_state", _G, _GPU,
           "NVML_GPU_FABRIC_STATE_*: 0 unsupported, 1 not started, 2 in progress, 3 completed."),
    _agent("gpufleet_gpu_fabric_status", _G, _GPU,
           "nvmlReturn_t of fabric registration (0 success); valid when state is 3."),
    _agent("gpufleet_gpu_fabric_health_mask", _G, _GPU, "Fabric health mask bits."),
    _agent("gpufleet_gpu_fabric_health", _G, _GPU,
           "NVML_GPU_FABRIC_HEALTH_SUMMARY_* (v3 fabric info only)."),
    _agent("gpufleet_gpu_fabric_info", _G, ("gpu", "cluster_uuid", "clique_id"),
           "NVLink domain membership: cluster UUID and clique (value 1)."),
    _agent("gpufleet_reading_unavailable", _G, ("scope", "gpu", "field", "status"),
           "1 per reading that could not be taken (not_supported, error or gpu_lost)."),
    # --- host, InfiniBand/RoCE rails ----------------------------------------------------------
    _agent("gpufleet_host_memory_total_bytes", _G, (), "Host RAM."),
    _agent("gpufleet_host_memory_available_bytes", _G, (), "Host RAM available."),
    _agent("gpufleet_host_load1", _G, (), "One-minute load average."),
    _agent("gpufleet_host_cpus", _G, (), "Logical CPUs."),
    _agent("gpufleet_host_disk_used_ratio", _G, ("mount",), "Used fraction (0..1) of each mount."),
    _agent("gpufleet_host_service_up", _G, ("service",), "1 when a required service runs."),
    _agent("gpufleet_ib_port_up", _G, _PORT, "1 when the port is ACTIVE and LinkUp."),
    _agent("gpufleet_ib_port_rate_gbps", _G, _PORT, "Port rate in Gb/s."),
    _agent("gpufleet_ib_port_errors_total", _CNT, (*_PORT, "counter"),
           "Port error counters from sysfs (symbol_error, link_downed, port_rcv_errors, ...)."),
    _agent("gpufleet_ib_port_info", _G, (*_PORT, "link_layer", "pci_bus_id", "numa_node"),
           "Port identity: link layer, PCI address, NUMA node."),
    _agent("gpufleet_gpu_rail_info", _G, ("gpu", "rail"),
           "The NIC port on each GPU's PCIe switch (value 1)."),
)  # fmt: skip

CONTROLLER_METRICS: tuple[MetricDef, ...] = (
    MetricDef("gpufleet_nodes", _G, ("state",),
              "Nodes by lifecycle state (every state listed, 0 included).", _C),
    MetricDef("gpufleet_ingest_messages_total", _CNT, ("kind",),
              "Agent messages accepted, by kind.", _C),
    MetricDef("gpufleet_ingest_latency_seconds", _H, (),
              "Seconds from reading a durable message off its stream to its commit.", _C),
    MetricDef("gpufleet_agent_streams", _G, (), "Live agent streams.", _C),
    MetricDef("gpufleet_ingest_queue_depth", _G, (), "Messages waiting for the store writer.", _C),
    MetricDef("gpufleet_directives_total", _CNT, ("kind",), "Directives sent, by kind.", _C),
    MetricDef("gpufleet_ingest_rejected_total", _CNT, ("code",),
              "Agent streams ended for a protocol violation, by gRPC status.", _C),
    MetricDef("gpufleet_ingest_batch_messages", _H, (), "Messages per committed store batch.", _C),
    # Per-node state with its recorded reason (the cause of the node's latest transition,
    # truncated to 200 characters; empty when none), one series per node, value 1.
    MetricDef("gpufleet_node_state_info", _G, ("node", "state", "reason"),
              "Each node's lifecycle state and the reason recorded with it (value 1).", _C),
    # Seconds since the controller last heard from the node (any message; a node not heard
    # from since the controller started counts from its start). Retired nodes are left out.
    MetricDef("gpufleet_node_heartbeat_age_seconds", _G, ("node",),
              "Seconds since the controller last heard from the node's agent.", _C),
)  # fmt: skip

SUPERVISOR_METRICS: tuple[MetricDef, ...] = (
    # `run` is the run id. A run's series are exported from its start (counters at 0, so
    # increase() sees the first restart) until an hour after it ends.
    MetricDef("gpufleet_run_step", _G, ("run",), "Latest completed training step.", _S),
    MetricDef("gpufleet_run_step_duration_seconds", _H, ("run",),
              "Wall time of each completed step (rank 0's report). Buckets: "
              "0.05 0.1 0.25 0.5 1 2 4 8 15 30 60 120.", _S),
    MetricDef("gpufleet_run_restarts_total", _CNT, ("run",),
              "Restarts of the run from a checkpoint (every rank relaunched).", _S),
    # A gauge, not a counter: the ledger re-splits the run's wall time as the run goes on. A
    # step executed again after a rollback moves its earlier execution's seconds from
    # "productive" to "recomputed" (productive falls when the re-execution is faster);
    # "restart" counts up to now until the first resumed step, then drops back to that step's
    # start; "other" is the remainder and shrinks each time a step lands. Only recomputed and
    # detection never shrink, and a counter of those two alone could not show where the wall
    # time goes. Read the split directly, or delta() it over a window.
    MetricDef("gpufleet_run_time_seconds", _G, ("run", "kind"),
              "Wall time of the run so far by the goodput ledger's kind: productive, "
              "recomputed, detection, restart, other (the kinds sum to the wall time).", _S),
    MetricDef("gpufleet_run_goodput_ratio", _G, ("run",),
              "Productive share of the run's wall time so far (ledger goodput, 0..1).", _S),
    MetricDef("gpufleet_run_step_energy_joules", _G, ("run",),
              "GPU energy per productive step, over the run's GPUs (ledger joules_per_step).",
              _S),
)  # fmt: skip

BURNIN_METRICS: tuple[MetricDef, ...] = (
    # Each node's latest judged burn-in (a multi-node group's result supersedes the node's
    # single-node one). `cohort` is the judge's CohortKey as "sku/driver/nccl/world_size".
    # A burn-in that did not complete measured nothing: it has a timestamp, but no busbw or
    # outlier series.
    MetricDef("gpufleet_burnin_busbw_bytes_per_second", _G, ("node", "cohort"),
              "All-reduce bus bandwidth of the node's latest burn-in at its largest size.", _B),
    MetricDef("gpufleet_burnin_outlier", _G, ("node", "cohort"),
              "1 when the judge flagged the node's latest burn-in (below the SKU floor or "
              "below its cohort's median - k*MAD), else 0.", _B),
    MetricDef("gpufleet_burnin_timestamp_seconds", _G, ("node",),
              "When the node's latest burn-in finished (evidence age = time() - this).", _B),
)  # fmt: skip

CONTRACT: tuple[MetricDef, ...] = (
    *AGENT_METRICS, *CONTROLLER_METRICS, *SUPERVISOR_METRICS, *BURNIN_METRICS,
)  # fmt: skip

#: Series Prometheus itself synthesises for every target; queries may use them too.
PROMETHEUS_SERIES: frozenset[str] = frozenset({"up", "scrape_duration_seconds"})


def _index(defs: tuple[MetricDef, ...]) -> Mapping[str, MetricDef]:
    out: dict[str, MetricDef] = {}
    for d in defs:
        for series in d.series_names:
            if series in out:
                raise RuntimeError(f"duplicate series name in the contract: {series}")
            out[series] = d
    return MappingProxyType(out)


#: Every series name PromQL may use -> its family.
BY_SERIES: Mapping[str, MetricDef] = _index(CONTRACT)


def lookup(series_name: str) -> MetricDef | None:
    """The family a series name belongs to, or None when it is not in the contract."""
    return BY_SERIES.get(series_name)
