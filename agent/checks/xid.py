"""XID events: each XID seen since the previous sweep, judged by the catalog below.

The catalog is data. Severity is DCGM's health-watch rating where DCGM rates the XID (FAIL ->
CRITICAL, WARN -> WARN; 48/74/79/95/119/120/140 always FAIL), otherwise NVSentinel's class (FATAL
-> CRITICAL, NONFATAL -> WARN); pure-information events (45, 63, 154, 162, 163) are OK. The
action is NVIDIA's catalog "immediate" bucket (IGNORE -> none, RESTART_BM -> reboot_node,
CONTACT_SUPPORT -> service, NVLink workflows -> reset_gpu). Rows the sources leave blank (164,
165, 167, 168, 171, 172) are our judgement: fatal-sounding errors CRITICAL, wear-out WARN/service.
XIDs 144-150 are decoded by intrinfo in NVIDIA's sheet; without it they are judged as fatal (as
NVSentinel does). An XID not in the catalog WARNs.
The operator can change any entry with an `[xid.N]` policy section.
An XID older than `AGE_SHOWN_AFTER_S` at the sweep (one the one-shot check found by looking back
in the kernel log) says how long ago it happened; `check_xid_history` explains a look back that
could not see everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from agent.checks.readings import finding
from agent.model import Action, Finding, NodeSample, Severity, XidEvent
from agent.policy import Policy

OK, WARN, CRIT = Severity.OK, Severity.WARN, Severity.CRITICAL
NONE, APP, DRAIN = Action.NONE, Action.RESTART_APP, Action.DRAIN
RESET, REBOOT, SERVICE = Action.RESET_GPU, Action.REBOOT_NODE, Action.SERVICE


@dataclass(frozen=True, slots=True)
class XidRule:
    """How one XID is judged."""

    mnemonic: str
    severity: Severity
    action: Action
    meaning: str


_ROWS: tuple[tuple[int, str, Severity, Action, str], ...] = (
    (13, "GR_EXCEPTION", WARN, APP, "graphics engine exception, usually an application fault"),
    (31, "FIFO_ERROR_MMU_ERR_FLT", WARN, APP, "GPU memory page fault"),
    (32, "", WARN, NONE, "flagged by DCGM's memory health watch"),
    (38, "", WARN, NONE, "flagged by DCGM's PCIe health watch"),
    (39, "", WARN, NONE, "flagged by DCGM's PCIe health watch"),
    (42, "", WARN, NONE, "flagged by DCGM's PCIe health watch"),
    (43, "RESETCHANNEL_VERIF_ERROR", WARN, NONE, "a channel was reset; the GPU itself is fine"),
    (45, "PREEMPTIVE_REMOVAL", OK, NONE, "cleanup after a previous error or a killed process"),
    (46, "GPU_TIMEOUT_ERROR", CRIT, RESET, "the GPU stopped processing"),
    (48, "GPU_ECC_DBE", CRIT, RESET, "double-bit ECC error"),
    (54, "", WARN, NONE, "flagged by DCGM's power health watch"),
    (56, "", WARN, NONE, "flagged by DCGM's power health watch"),
    (57, "", WARN, NONE, "flagged by DCGM's power health watch"),
    (58, "", WARN, NONE, "flagged by DCGM's power health watch"),
    (60, "", WARN, NONE, "flagged by DCGM's thermal health watch"),
    (61, "PMU_BREAKPOINT", WARN, SERVICE, "internal micro-controller breakpoint"),
    (62, "PMU_HALT_ERROR", WARN, RESET, "internal micro-controller halt"),
    (63, "INFOROM_DRAM_RETIREMENT_EVENT", OK, NONE, "row remap or page retirement recorded"),
    (64, "INFOROM_DRAM_RETIREMENT_FAILURE", CRIT, RESET, "row remap or page retirement failed"),
    (67, "", WARN, NONE, "flagged by DCGM's NVLink health watch"),
    (68, "NVDEC0_ERROR", WARN, APP, "video decoder exception"),
    (73, "", WARN, NONE, "flagged by DCGM's NVLink health watch"),
    (74, "NVLINK_ERROR", CRIT, RESET, "NVLink error"),
    (78, "", WARN, NONE, "flagged by DCGM's power health watch"),
    (79, "GPU_HAS_FALLEN_OFF_THE_BUS", CRIT, REBOOT, "the GPU fell off the bus"),
    (92, "EXCESSIVE_SBE_INTERRUPTS", WARN, NONE, "high single-bit ECC error rate"),
    (93, "", WARN, NONE, "flagged by DCGM's InfoROM health watch"),
    (94, "CONTAINED_ERROR", WARN, APP, "contained ECC error; GPU reset can be deferred"),
    (95, "UNCONTAINED_ERROR", CRIT, RESET, "uncontained ECC error"),
    (109, "CTXSW_TIMEOUT_ERROR", CRIT, RESET, "context-switch timeout"),
    (119, "GSP_RPC_TIMEOUT", CRIT, RESET, "GSP firmware RPC timeout"),
    (120, "GSP_ERROR", CRIT, RESET, "GSP firmware error"),
    (121, "C2C_ERROR", WARN, NONE, "corrected Grace-to-GPU C2C link error"),
    (136, "ALI_TRAINING_FAIL", CRIT, RESET, "NVLink link training failed"),
    (137, "NVLINK_PRIV_ERR", WARN, NONE, "NVLink FLA privilege error"),
    (140, "UNRECOVERABLE_ECC_ERROR_ESCAPE", CRIT, RESET, "unrecoverable ECC error escaped"),
    (143, "GPU_INIT_ERROR", CRIT, RESET, "GPU initialisation failed"),
    (144, "NVLINK_SAW", CRIT, RESET, "NVLink5 error (judged conservatively as fatal)"),
    (145, "NVLINK_RLW", CRIT, RESET, "NVLink5 error (judged conservatively as fatal)"),
    (146, "NVLINK_TLW", CRIT, RESET, "NVLink5 error (judged conservatively as fatal)"),
    (147, "NVLINK_TREX", CRIT, RESET, "NVLink5 error (judged conservatively as fatal)"),
    (148, "NVLINK_NVLPW_CTRL", CRIT, RESET, "NVLink5 error (judged conservatively as fatal)"),
    (149, "NVLINK_NETIR", CRIT, RESET, "NVLink5 error (judged conservatively as fatal)"),
    (150, "NVLINK_MSE", CRIT, RESET, "NVLink5 error (judged conservatively as fatal)"),
    (154, "GPU_RECOVERY_ACTION_CHANGED", OK, NONE, "the driver's recovery action changed"),
    (155, "NVLINK_SW_DEFINED_ERROR", CRIT, RESET, "NVLink software-defined error"),
    (156, "RESOURCE_RETIREMENT_EVENT", CRIT, RESET, "resource retirement event"),
    (157, "RESOURCE_RETIREMENT_FAILURE", WARN, NONE, "resource retirement failure"),
    (158, "GPU_FATAL_TIMEOUT", CRIT, RESET, "fatal GPU timeout"),
    (162, "", OK, NONE, "power-smoothing circuitry re-engaged"),
    (163, "", OK, NONE, "power-smoothing circuitry disengaged"),
    (164, "", WARN, SERVICE, "power-smoothing lifetime running low"),
    (165, "", WARN, SERVICE, "power-smoothing lifetime exhausted"),
    (167, "PCIE_FATAL_TIMEOUT", CRIT, RESET, "fatal PCIe timeout"),
    (168, "REDUCED_GPU_MEMORY_CAPACITY", WARN, SERVICE, "GPU memory capacity reduced"),
    (171, "UNCORRECTABLE_DRAM", CRIT, RESET, "uncorrectable DRAM error (detail to 48)"),
    (172, "UNCORRECTABLE_SRAM", CRIT, RESET, "uncorrectable SRAM error (detail to 48)"),
)

CATALOG: Mapping[int, XidRule] = MappingProxyType(
    {xid: XidRule(mnemonic, sev, act, meaning) for xid, mnemonic, sev, act, meaning in _ROWS}
)
UNKNOWN_XID = XidRule("", WARN, NONE, "not in the catalog; look it up in NVIDIA's XID catalog")

_TODO: Mapping[Action, str] = MappingProxyType(
    {
        NONE: "No action needed now; watch for repeats.",
        APP: "Restart the application; the GPU can stay in service.",
        DRAIN: "Stop scheduling work on it and investigate.",
        RESET: "Drain the GPU and reset it (or reboot the node).",
        REBOOT: "Drain and reboot the node; if it recurs, re-seat the GPU, check power and "
        "thermals, and run a field diagnostic.",
        SERVICE: "Run a field diagnostic; contact support (RMA) if it fails.",
    }
)


def rule_for(xid: int, policy: Policy) -> XidRule:
    """The catalog's rule for `xid`, with the operator's `[xid.N]` override applied."""
    rule = CATALOG.get(xid, UNKNOWN_XID)
    override = policy.xid_overrides.get(xid)
    if override is None:
        return rule
    return XidRule(
        rule.mnemonic,
        override.severity or rule.severity,
        override.action or rule.action,
        rule.meaning,
    )


AGE_SHOWN_AFTER_S = 60.0
"""A daemon sweep's XIDs are seconds old; older ones come from a look back and show their age."""


def duration_text(seconds: float) -> str:
    """"45 s", "12 min", "5.5 h", "3.0 days": a span as an SRE reads it."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_xid(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """One finding per (GPU, XID) among the XIDs that arrived since the previous sweep."""
    if not sample.xid_events:
        return []
    by_bus = {key: g.index for g in sample.gpus if (key := _bus_key(g.pci_bus_id)) is not None}
    groups: dict[tuple[int | None, int], list[XidEvent]] = {}
    for event in sample.xid_events:
        gpu = event.gpu
        if gpu is None and (key := _bus_key(event.pci_bus_id)) is not None:
            gpu = by_bus.get(key)
        groups.setdefault((gpu, event.xid), []).append(event)
    return [
        _judge(gpu, xid, events, policy, sample.timestamp)
        for (gpu, xid), events in groups.items()
    ]


def _judge(
    gpu: int | None, xid: int, events: list[XidEvent], policy: Policy, now: float
) -> Finding:
    rule = rule_for(xid, policy)
    bus = events[0].pci_bus_id
    where = f"GPU {gpu}" if gpu is not None else "A GPU of this node"
    where += f" ({bus})" if bus else ""
    name = f" {rule.mnemonic}" if rule.mnemonic else ""
    times = f" ({len(events)} times)" if len(events) > 1 else ""
    last = max(e.timestamp for e in events)
    age = max(0.0, now - last)
    aged = age >= AGE_SHOWN_AFTER_S
    ago = f", {'last ' if times else ''}{duration_text(age)} ago" if aged else ""
    message = f"{where}: XID {xid}{name}{times}{ago}: {rule.meaning}."
    if rule.severity is not Severity.OK:
        message += " " + _TODO[rule.action]
    return finding(
        "xid",
        rule.severity,
        message,
        gpu=gpu,
        action=rule.action,
        xid=xid,
        mnemonic=rule.mnemonic or None,
        count=len(events),
        first_timestamp=min(e.timestamp for e in events),
        last_timestamp=last,
        source=",".join(sorted({e.source for e in events})),
        pci_bus_id=bus,
        **({"age_s": round(age, 1)} if aged else {}),
    )


def check_xid_history(lookback_s: float, error: str, undated: int) -> list[Finding]:
    """Informational findings (never an alarm) on a kernel-log look back of `lookback_s` seconds
    that could not see everything: the log was unreadable (`error`), or `undated` XID lines had
    no timestamp to tell their age by."""
    span = duration_text(lookback_s)
    out: list[Finding] = []
    if error:
        out.append(finding(
            "kernel_log", Severity.OK,
            f"The kernel log could not be read ({error}): XIDs of the last {span} before this "
            "check were not looked at (NVML and the GPU counters were). Run it as root, or give "
            "--kernel-log a readable copy (journalctl -k -o short-iso).",
            error=error, lookback_s=lookback_s,
        ))
    if undated:
        out.append(finding(
            "kernel_log", Severity.OK,
            f"{undated} XID line(s) in the kernel log carry no timestamp this agent can read, so "
            f"their age is unknown and they were not judged (looking back {span}).",
            undated=undated, lookback_s=lookback_s,
        ))
    return out


def _bus_key(bus_id: str | None) -> tuple[int, int, int] | None:
    """(domain, bus, device) of a PCI address in NVML ("00000000:18:00.0") or kernel form."""
    if not bus_id:
        return None
    text = bus_id.strip().lower().removeprefix("pci:")
    parts = text.split(":")
    try:
        device = int(parts[-1].split(".")[0], 16)
        bus = int(parts[-2], 16)
        domain = int(parts[-3], 16) if len(parts) >= 3 else 0
    except (ValueError, IndexError):
        return None
    return domain, bus, device
