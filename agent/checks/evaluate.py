"""Run every check on one sample: the registry, and an `evaluate` that never raises."""

from __future__ import annotations

from agent.checks import fabric, host, inventory, memory, nvlink, pcie, reachability, thermal, xid
from agent.checks.readings import CheckFn, finding
from agent.model import Finding, NodeSample, Severity
from agent.policy import Policy

ALL_CHECKS: tuple[tuple[str, CheckFn], ...] = (
    ("gpu_lost", reachability.check_gpu_lost),
    ("nvml", reachability.check_nvml),
    ("gpu_count", inventory.check_gpu_count),
    ("xid", xid.check_xid),
    ("ecc", memory.check_ecc),
    ("row_remap", memory.check_row_remap),
    ("retired_pages", memory.check_retired_pages),
    ("recovery_action", memory.check_recovery_action),
    ("nvlink_state", nvlink.check_nvlink_state),
    ("nvlink_errors", nvlink.check_nvlink_errors),
    ("nvlink5_errors", nvlink.check_nvlink5),
    ("fabric", fabric.check_fabric),
    ("temperature", thermal.check_temperature),
    ("clock_events", thermal.check_clock_events),
    ("violations", thermal.check_violations),
    ("power", thermal.check_power),
    ("pcie_replay", pcie.check_pcie_replay),
    ("pcie_link", pcie.check_pcie_link),
    ("persistence_mode", inventory.check_persistence_mode),
    ("vbios", inventory.check_vbios),
    ("host", host.check_host_read),
    ("host_memory", host.check_host_memory),
    ("disk", host.check_disks),
    ("load", host.check_load),
    ("services", host.check_services),
    ("ib_ports", host.check_ib_ports),
    ("ib_counters", host.check_ib_counters),
    ("rails", host.check_rails),
)
"""Every check in report order (most decisive first). Names are the ids of their UNKNOWNs."""


def evaluate(
    sample: NodeSample,
    previous: NodeSample | None,
    policy: Policy,
    checks: tuple[tuple[str, CheckFn], ...] = ALL_CHECKS,
) -> tuple[Finding, ...]:
    """All findings for `sample`; a check that raises becomes one UNKNOWN finding, never an error.

    `previous` is the sample the rates are computed against (the previous sweep, or the start of
    a `--window`); None means no rates.
    """
    out: list[Finding] = []
    for name, check in checks:
        try:
            out.extend(check(sample, previous, policy))
        except Exception as exc:
            out.append(
                finding(
                    name,
                    Severity.UNKNOWN,
                    f"The {name} check failed ({type(exc).__name__}: {exc}); it could not judge "
                    "this node. This is a gpufleet bug: please report it with the sample.",
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
    return tuple(out)
