"""GPU memory health: ECC, row remapping, page retirement and the driver's recovery action.

Thresholds follow DCGM's memory and driver health watches (see nvidia-health-stack.md a.1):
volatile DBE > 0, a failed remap and the unrepairable flag are CRITICAL; a pending remap or
retirement and many uncorrectable remaps WARN; retired pages at the table limit are CRITICAL.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from agent.checks.readings import GpuView, finding, run_per_gpu
from agent.model import Action, Finding, NodeSample, Severity
from agent.policy import Policy

# NVML_GPU_RECOVERY_ACTION_* -> (name, severity, action, what to do). 0 (NONE) is healthy.
RECOVERY_ACTIONS: Mapping[int, tuple[str, Severity, Action, str]] = MappingProxyType(
    {
        1: (
            "GPU_RESET",
            Severity.CRITICAL,
            Action.RESET_GPU,
            "Terminate all GPU processes and reset the GPU.",
        ),
        2: ("NODE_REBOOT", Severity.CRITICAL, Action.REBOOT_NODE, "Reboot the operating system."),
        3: (
            "DRAIN_P2P",
            Severity.WARN,
            Action.DRAIN,
            "Quiesce peer-to-peer and UVM work on this GPU, then re-check.",
        ),
        4: (
            "DRAIN_AND_RESET",
            Severity.CRITICAL,
            Action.RESET_GPU,
            "Do not schedule new work on this GPU; reset it once existing work has drained.",
        ),
        5: (
            "RECOVER_IMEX_DOMAIN",
            Severity.CRITICAL,
            Action.DRAIN,
            "Recover the IMEX domain (check the IMEX daemons of the NVLink domain).",
        ),
        6: ("BUS_RESET", Severity.CRITICAL, Action.RESET_GPU, "Reset the GPU's PCIe bus."),
        7: ("SYSTEM_REBOOT", Severity.CRITICAL, Action.REBOOT_NODE, "Reboot the system."),
    }
)


def check_ecc(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """Volatile uncorrectable (double-bit) ECC errors since the driver loaded: CRITICAL."""
    return run_per_gpu("ecc", ("ecc_dbe_volatile",), _judge_ecc, sample, previous, policy)


def _judge_ecc(view: GpuView) -> list[Finding]:
    dbe = view.gpu.ecc_dbe_volatile
    if dbe is None or dbe <= 0:
        return []
    return [
        finding(
            "ecc_volatile_dbe",
            Severity.CRITICAL,
            f"GPU {view.gpu.index}: {dbe} uncorrectable (double-bit) ECC error(s) since the driver "
            "loaded. Drain the GPU and reset it or reboot the node.",
            gpu=view.gpu.index,
            action=Action.RESET_GPU,
            ecc_dbe_volatile=dbe,
            threshold=0,
        )
    ]


def check_row_remap(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Row remapping (Ampere and later): failure, pending, uncorrectable count, unrepairable."""
    fields = (
        "remap_failure",
        "remap_pending",
        "remapped_rows_uncorrectable",
        "memory_unrepairable",
    )
    return run_per_gpu("row_remap", fields, _judge_row_remap, sample, previous, policy)


def _judge_row_remap(view: GpuView) -> list[Finding]:
    gpu, i = view.gpu, view.gpu.index
    out: list[Finding] = []
    if gpu.remap_failure:
        out.append(
            finding(
                "row_remap_failure",
                Severity.CRITICAL,
                f"GPU {i}: a row remap failed: unrecoverable memory hardware damage. Reset the "
                "GPU or reboot the node immediately; if it recurs, run a field diagnostic (RMA).",
                gpu=i,
                action=Action.RESET_GPU,
                remap_failure=True,
            )
        )
    if gpu.memory_unrepairable:
        out.append(
            finding(
                "memory_unrepairable",
                Severity.CRITICAL,
                f"GPU {i}: the driver flags its memory as unrepairable. Take the GPU out of "
                "service and run a field diagnostic (RMA).",
                gpu=i,
                action=Action.SERVICE,
                memory_unrepairable=True,
            )
        )
    if gpu.remap_pending:
        out.append(
            finding(
                "row_remap_pending",
                Severity.WARN,
                f"GPU {i}: a row remap is pending; it takes effect at the next GPU reset. "
                "Reset the GPU when its work has drained.",
                gpu=i,
                action=Action.RESET_GPU,
                remap_pending=True,
            )
        )
    rows, limit = gpu.remapped_rows_uncorrectable, view.limits.uncorrectable_remap_limit
    if rows is not None and rows >= limit:
        out.append(
            finding(
                "row_remap_uncorrectable_limit",
                Severity.WARN,
                f"GPU {i}: {rows} rows remapped for uncorrectable errors (limit {limit}). "
                "Run a field diagnostic on the GPU.",
                gpu=i,
                action=Action.SERVICE,
                remapped_rows_uncorrectable=rows,
                threshold=limit,
            )
        )
    return out


def check_retired_pages(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Dynamic page retirement (pre-Ampere; NOT_SUPPORTED on H100 and later): limit and pending."""
    fields = ("retired_pages_sbe", "retired_pages_dbe", "retired_pages_pending")
    return run_per_gpu("retired_pages", fields, _judge_retired, sample, previous, policy)


def _judge_retired(view: GpuView) -> list[Finding]:
    gpu, i = view.gpu, view.gpu.index
    out: list[Finding] = []
    sbe, dbe = gpu.retired_pages_sbe, gpu.retired_pages_dbe
    if sbe is not None or dbe is not None:
        total, limit = (sbe or 0) + (dbe or 0), view.limits.retired_pages_limit
        if total >= limit:
            out.append(
                finding(
                    "retired_pages_limit",
                    Severity.CRITICAL,
                    f"GPU {i}: {total} retired memory pages (limit {limit}); the retirement "
                    "table is full. Run a field diagnostic on the GPU.",
                    gpu=i,
                    action=Action.SERVICE,
                    retired_pages_sbe=sbe,
                    retired_pages_dbe=dbe,
                    threshold=limit,
                )
            )
    if gpu.retired_pages_pending:
        out.append(
            finding(
                "retired_pages_pending",
                Severity.WARN,
                f"GPU {i}: a page retirement is pending; it takes effect at the next GPU reset.",
                gpu=i,
                action=Action.RESET_GPU,
                retired_pages_pending=True,
            )
        )
    return out


def check_recovery_action(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """The driver's GPU recovery action (NVML field 230): what NVIDIA says must happen now."""
    return run_per_gpu(
        "recovery_action", ("recovery_action",), _judge_recovery, sample, previous, policy
    )


def _judge_recovery(view: GpuView) -> list[Finding]:
    code, i = view.gpu.recovery_action, view.gpu.index
    if code is None or code == 0:
        return []
    known = RECOVERY_ACTIONS.get(code)
    if known is None:
        return [
            finding(
                "recovery_action",
                Severity.WARN,
                f"GPU {i}: the driver asks for recovery action {code}, which this agent does not "
                "know. Check nvidia-smi -q and the driver release notes.",
                gpu=i,
                recovery_action=code,
            )
        ]
    name, severity, action, todo = known
    return [
        finding(
            "recovery_action",
            severity,
            f"GPU {i}: the driver's recovery action is {name}. {todo}",
            gpu=i,
            action=action,
            recovery_action=code,
            recovery_action_name=name,
        )
    ]
