"""Node detail: one node (or a few), per GPU: verdict and findings, temperature, power, clocks
and clock-event reasons, ECC, remapped rows, XIDs, NVLink, fabric, PCIe, IB rails, host."""

from __future__ import annotations

from typing import Any

from dashboards.grafana import (
    Board,
    Q,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from dashboards.queries import GPU_VAR, NODE_VAR, RATE, dcgm, dcgm_rate, on_node

UID = "gpufleet-node-detail"
_GPU = f'gpu=~"{GPU_VAR}"'
_RED_AT_1 = ((None, "green"), (1.0, "red"))
# nvmlClocksEventReason bits worth seeing on a training node (GpuIdle and app settings omitted).
CLOCK_EVENT_BITS: tuple[tuple[str, int], ...] = (
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sw_thermal", 0x20),
    ("hw_thermal", 0x40),
    ("hw_power_brake", 0x80),
)
# Variable queries: node names from either hostname spelling, GPUs of the chosen node(s).
NODE_QUERY = "query_result(count by (hostname, Hostname) (DCGM_FI_DEV_GPU_TEMP))"
NODE_REGEX = '/[hH]ostname="([^"]+)"/'
GPU_QUERY = f"query_result(count by (gpu) ({dcgm('DCGM_FI_DEV_GPU_TEMP', node=NODE_VAR)}))"
GPU_REGEX = '/gpu="([0-9]+)"/'


def build() -> dict[str, Any]:
    """The dashboard JSON."""
    b = Board(
        "gpufleet / Node detail",
        UID,
        "One node's GPUs: health findings, thermals, power, clocks, memory errors, XIDs, "
        "NVLink, fabric, PCIe, InfiniBand rails and host.",
        ["node"],
    )
    b.variable(query_variable("node", "Node", NODE_QUERY, regex=NODE_REGEX, include_all=False))
    b.variable(query_variable("gpu", "GPU", GPU_QUERY, regex=GPU_REGEX))
    _health(b)
    _thermals_power(b)
    _clocks(b)
    _memory(b)
    _xids(b)
    _interconnect(b)
    _rails_and_host(b)
    return b.build()


def _per_gpu(metric: str, extra: str = "") -> str:
    """A gpufleet per-GPU series on the selected node and GPUs."""
    sel = f"{metric}{{{_GPU}{', ' + extra if extra else ''}}}"
    return on_node(sel)


def _rate_on_node(counter: str, matchers: str = "") -> str:
    """Per-second rate of an agent counter, with hostname, on the selected node(s)."""
    selector = f"{counter}{{{matchers}}}" if matchers else counter
    return on_node(f"rate({selector}[{RATE}])")


def _health(b: Board) -> None:
    b.row("Health")
    b.add(stat_panel(
        "Verdict", "The agent's verdict from its latest sweep.",
        [Q(f"max by (verdict) ({on_node('gpufleet_node_verdict')}) == 1", "{{verdict}}")],
        thresholds=((None, "blue"),), name_and_value=True,
    ), 4, 6)  # fmt: skip
    b.add(stat_panel(
        "Recommended action", "The most escalated action the findings ask for.",
        [Q(f"max by (action) ({on_node('gpufleet_node_action')}) == 1", "{{action}}")],
        thresholds=((None, "blue"),), name_and_value=True,
    ), 4, 6)  # fmt: skip
    b.add(stat_panel(
        "GPUs", "GPUs the driver reports, and GPUs lost.",
        [Q(f"sum({on_node('gpufleet_gpus')})", "present"),
         Q(f"sum({_per_gpu('gpufleet_gpu_lost')})", "lost")],
        name_and_value=True,
    ), 4, 6)  # fmt: skip
    b.add(table_panel(
        "Findings", "Current non-OK findings, with the action each recommends.",
        [Q(on_node("gpufleet_finding_info"))],
    ), 12, 6)  # fmt: skip
    b.add(table_panel(
        "GPU inventory", "Identity and firmware of each GPU.", [Q(_per_gpu("gpufleet_gpu_info"))],
    ), 24, 6)  # fmt: skip


def _thermals_power(b: Board) -> None:
    b.row("Thermals and power")
    b.add(timeseries_panel(
        "GPU temperature", "Per GPU, and the temperature at which clocks slow down.",
        [Q(dcgm("DCGM_FI_DEV_GPU_TEMP", _GPU), "gpu {{gpu}}"),
         Q(f"max({_per_gpu('gpufleet_gpu_slowdown_temperature_celsius')})", "slowdown")],
        "celsius",
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "Memory (HBM) temperature", "",
        [Q(dcgm("DCGM_FI_DEV_MEMORY_TEMP", _GPU), "gpu {{gpu}}")], "celsius",
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "Power draw", "Board power and the enforced limit.",
        [Q(dcgm("DCGM_FI_DEV_POWER_USAGE", _GPU), "gpu {{gpu}}"),
         Q(f"max({_per_gpu('gpufleet_gpu_power_limit_watts')})", "limit")],
        "watt", min_value=0,
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "Time throttled", "Share of time clocks were held down for power or thermal reasons.",
        [Q(f"{dcgm_rate('DCGM_FI_DEV_POWER_VIOLATION', _GPU)} / 1e9", "power gpu {{gpu}}"),
         Q(f"{dcgm_rate('DCGM_FI_DEV_THERMAL_VIOLATION', _GPU)} / 1e9",
           "thermal gpu {{gpu}}")],
        "percentunit", min_value=0,
    ), 12)  # fmt: skip
    b.add(timeseries_panel(
        "Utilization", "",
        [Q(dcgm("DCGM_FI_DEV_GPU_UTIL", _GPU), "gpu {{gpu}}"),
         Q(dcgm("DCGM_FI_DEV_MEM_COPY_UTIL", _GPU), "mem copy gpu {{gpu}}")],
        "percent", min_value=0, max_value=100,
    ), 12)  # fmt: skip


def _clocks(b: Board) -> None:
    b.row("Clocks")
    b.add(timeseries_panel(
        "SM clock", "", [Q(f"{dcgm('DCGM_FI_DEV_SM_CLOCK', _GPU)} * 1000000", "gpu {{gpu}}")],
        "hertz",
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "Memory clock", "", [Q(f"{dcgm('DCGM_FI_DEV_MEM_CLOCK', _GPU)} * 1000000", "gpu {{gpu}}")],
        "hertz",
    ), 8)  # fmt: skip
    reasons = _per_gpu("gpufleet_gpu_clock_event_reasons")
    b.add(timeseries_panel(
        "Clock-event reasons active",
        "1 while a reason holds the clocks down (decoded from nvmlClocksEventReason bits).",
        [Q(f"floor(({reasons}) / {bit}) % 2", f"{name} gpu {{{{gpu}}}}")
         for name, bit in CLOCK_EVENT_BITS],
        min_value=0, max_value=1,
    ), 8)  # fmt: skip


def _memory(b: Board) -> None:
    b.row("Memory errors")
    b.add(timeseries_panel(
        "ECC errors (volatile, since driver load)", "",
        [Q(dcgm("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", _GPU), "DBE gpu {{gpu}}"),
         Q(dcgm("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", _GPU), "SBE gpu {{gpu}}")], min_value=0,
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "ECC errors (aggregate, lifetime)", "",
        [Q(dcgm("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", _GPU), "DBE gpu {{gpu}}"),
         Q(dcgm("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", _GPU), "SBE gpu {{gpu}}")], min_value=0,
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "Remapped rows", "Rows remapped for uncorrectable/correctable errors (Ampere and later).",
        [Q(dcgm("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", _GPU), "uncorrectable gpu {{gpu}}"),
         Q(dcgm("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", _GPU), "correctable gpu {{gpu}}")],
        min_value=0,
    ), 8)  # fmt: skip
    b.add(stat_panel(
        "Row remap failed / pending / memory unrepairable",
        "Any 1 here needs a GPU reset (pending) or service (failed, unrepairable).",
        [Q(dcgm("DCGM_FI_DEV_ROW_REMAP_FAILURE", _GPU), "failed gpu {{gpu}}"),
         Q(_per_gpu("gpufleet_gpu_remap_pending"), "pending gpu {{gpu}}"),
         Q(_per_gpu("gpufleet_gpu_memory_unrepairable"), "unrepairable gpu {{gpu}}")],
        thresholds=_RED_AT_1, name_and_value=True,
    ), 16, 6)  # fmt: skip
    b.add(timeseries_panel(
        "Retired pages (pre-Ampere)", "",
        [Q(dcgm("DCGM_FI_DEV_RETIRED_DBE", _GPU), "DBE gpu {{gpu}}"),
         Q(dcgm("DCGM_FI_DEV_RETIRED_SBE", _GPU), "SBE gpu {{gpu}}")], min_value=0,
    ), 8, 6)  # fmt: skip


def _xids(b: Board) -> None:
    b.row("XIDs and recovery")
    b.add(table_panel(
        "Last XID per GPU", "DCGM_FI_DEV_XID_ERRORS: the last XID seen (not a count).",
        [Q(dcgm("DCGM_FI_DEV_XID_ERRORS", _GPU))],
    ), 12, 7)  # fmt: skip
    b.add(timeseries_panel(
        "XID events per 5 minutes", "",
        [Q(f"sum by (gpu, xid) ({on_node(f'increase(gpufleet_xid_events_total{{{_GPU}}}[5m])')})",
           "gpu {{gpu}} XID {{xid}}")], min_value=0,
    ), 6, 7)  # fmt: skip
    b.add(stat_panel(
        "Lost / recovery action",
        "GPU lost (1 = fallen off the bus) and the driver's recovery action "
        "(0 none, 1 reset, 2 reboot, 3 drain P2P, 4 drain and reset).",
        [Q(_per_gpu("gpufleet_gpu_lost"), "lost gpu {{gpu}}"),
         Q(_per_gpu("gpufleet_gpu_recovery_action"), "action gpu {{gpu}}")],
        thresholds=_RED_AT_1, name_and_value=True,
    ), 6, 7)  # fmt: skip


def _interconnect(b: Board) -> None:
    b.row("NVLink, fabric and PCIe")
    b.add(timeseries_panel(
        "NVLinks up", "Links up per GPU (a drop is a link down).",
        [Q(f"sum by (gpu) ({_per_gpu('gpufleet_nvlink_up')})", "gpu {{gpu}}")], min_value=0,
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "NVLink errors", "Per-link error counters (replay, recovery, CRC), per second.",
        [Q(f"sum by (gpu, counter) ({_rate_on_node('gpufleet_nvlink_errors_total', _GPU)})",
           "gpu {{gpu}} {{counter}}"),
         Q(f"sum by (gpu, counter) ({_rate_on_node('gpufleet_nvlink5_events_total', _GPU)})",
           "gpu {{gpu}} nvlink5 {{counter}}")],
        "ops", min_value=0,
    ), 8)  # fmt: skip
    b.add(timeseries_panel(
        "PCIe replays", "PCIe retries per second.",
        [Q(dcgm_rate("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", _GPU), "gpu {{gpu}}")],
        "ops", min_value=0,
    ), 8)  # fmt: skip
    b.add(table_panel(
        "Fabric", "NVLink fabric registration: state 3 = completed, status 0 = success, "
        "health mask 0 = healthy; clique and cluster UUID name the NVLink domain.",
        [Q(_per_gpu("gpufleet_gpu_fabric_state")), Q(_per_gpu("gpufleet_gpu_fabric_status")),
         Q(_per_gpu("gpufleet_gpu_fabric_health_mask")), Q(_per_gpu("gpufleet_gpu_fabric_info"))],
    ), 12, 7)  # fmt: skip
    b.add(table_panel(
        "PCIe link", "Current vs maximum generation and width (current drops at idle).",
        [Q(_per_gpu("gpufleet_gpu_pcie_link_gen")), Q(_per_gpu("gpufleet_gpu_pcie_link_width"))],
    ), 12, 7)  # fmt: skip


def _rails_and_host(b: Board) -> None:
    b.row("InfiniBand/RoCE rails and host")
    b.add(stat_panel(
        "IB ports up", "1 = ACTIVE and LinkUp.",
        [Q(on_node("gpufleet_ib_port_up"), "{{device}}/{{port}}")],
        thresholds=((None, "red"), (1.0, "green")), name_and_value=True,
    ), 8, 6)  # fmt: skip
    b.add(timeseries_panel(
        "IB port errors", "Error counters per second, per port.",
        [Q(f"sum by (device, port, counter) ({_rate_on_node('gpufleet_ib_port_errors_total')})",
           "{{device}}/{{port}} {{counter}}")], "ops", min_value=0,
    ), 8, 6)  # fmt: skip
    b.add(table_panel(
        "GPU to rail", "The NIC port on each GPU's PCIe switch, and its rate (Gb/s).",
        [Q(_per_gpu("gpufleet_gpu_rail_info")), Q(on_node("gpufleet_ib_port_rate_gbps"))],
    ), 8, 6)  # fmt: skip
    b.add(timeseries_panel(
        "Host memory available", "",
        [Q(on_node("gpufleet_host_memory_available_bytes"), "available"),
         Q(on_node("gpufleet_host_memory_total_bytes"), "total")], "bytes", min_value=0,
    ), 8, 6)  # fmt: skip
    b.add(timeseries_panel(
        "Disk used", "", [Q(on_node("gpufleet_host_disk_used_ratio"), "{{mount}}")],
        "percentunit", min_value=0, max_value=1,
    ), 8, 6)  # fmt: skip
    b.add(stat_panel(
        "Required services", "1 when the service's process runs.",
        [Q(on_node("gpufleet_host_service_up"), "{{service}}")],
        thresholds=((None, "red"), (1.0, "green")), name_and_value=True,
    ), 8, 6)  # fmt: skip
