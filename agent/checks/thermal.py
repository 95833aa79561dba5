"""Thermals, clocks and power.

Decisions (DCGM's thermal and power watches, made explicit):
- temperature at or above the GPU's own SLOWDOWN threshold -> CRITICAL, drain: the hardware is
  already cutting clocks, so the GPU would be a straggler in any synchronous job; within
  `temp_margin_c` below it -> WARN.
- HW slowdown / HW thermal / power-brake clock-event reasons (the policy's list) -> WARN.
- growth of thermal- or power-violation time over the window -> WARN (needs a previous sample).
- a power reading of 0 W or less -> WARN `power_unreadable` (DCGM's POWER_UNREADABLE: a blank or
  sentinel value). A power read that fails outright is UNKNOWN by the central rule.
"""

from __future__ import annotations

from agent.checks.readings import GpuView, delta, finding, run_per_gpu
from agent.model import Action, Finding, NodeSample, Severity
from agent.policy import CLOCK_EVENT_REASONS, Policy


def check_temperature(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """GPU temperature against the GPU's own slowdown threshold."""
    fields = ("temperature_c", "slowdown_temp_c")
    return run_per_gpu("temperature", fields, _judge_temperature, sample, previous, policy)


def _judge_temperature(view: GpuView) -> list[Finding]:
    temp, slowdown, i = view.gpu.temperature_c, view.gpu.slowdown_temp_c, view.gpu.index
    if temp is None or slowdown is None or slowdown <= 0:
        return []
    margin = view.limits.temp_margin_c
    if temp >= slowdown:
        return [
            finding(
                "temperature_slowdown",
                Severity.CRITICAL,
                f"GPU {i}: {temp:g} °C, at or above its slowdown threshold {slowdown:g} °C; the "
                "hardware is cutting clocks. Drain it and check cooling (airflow, fans, liquid).",
                gpu=i,
                action=Action.DRAIN,
                temperature_c=temp,
                slowdown_temp_c=slowdown,
                margin_c=margin,
            )
        ]
    if temp >= slowdown - margin:
        return [
            finding(
                "temperature_near_slowdown",
                Severity.WARN,
                f"GPU {i}: {temp:g} °C, within {margin:g} °C of its slowdown threshold "
                f"{slowdown:g} °C. Check cooling before it throttles.",
                gpu=i,
                temperature_c=temp,
                slowdown_temp_c=slowdown,
                margin_c=margin,
            )
        ]
    return []


def check_clock_events(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Hardware clock-event (throttle) reasons active right now."""
    fields = ("clock_event_reasons",)
    return run_per_gpu("clock_events", fields, _judge_clock_events, sample, previous, policy)


def _judge_clock_events(view: GpuView) -> list[Finding]:
    reasons = view.gpu.clock_event_reasons
    if reasons is None:
        return []
    active = reasons & view.limits.warn_clock_event_mask
    if not active:
        return []
    names = [name for name, bit in CLOCK_EVENT_REASONS.items() if active & bit]
    return [
        finding(
            "clock_events",
            Severity.WARN,
            f"GPU {view.gpu.index}: clocks are being cut by {', '.join(names)}. Check cooling "
            "and power delivery; the GPU will run slow.",
            gpu=view.gpu.index,
            clock_event_reasons=reasons,
            active=",".join(names),
        )
    ]


def check_violations(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Growth of thermal- and power-violation time between the two samples."""
    fields = ("thermal_violation_ns", "power_violation_ns")
    return run_per_gpu("violations", fields, _judge_violations, sample, previous, policy)


def _judge_violations(view: GpuView) -> list[Finding]:
    if view.prev is None or view.elapsed_s is None:
        return []
    gpu, prev, limits = view.gpu, view.prev, view.limits
    out: list[Finding] = []
    for kind, grown, limit in (
        ("thermal", delta(gpu.thermal_violation_ns, prev.thermal_violation_ns),
         limits.thermal_violation_warn_fraction),
        ("power", delta(gpu.power_violation_ns, prev.power_violation_ns),
         limits.power_violation_warn_fraction),
    ):  # fmt: skip
        if not grown:
            continue
        fraction = grown / (view.elapsed_s * 1e9)
        if fraction <= limit:
            continue
        out.append(
            finding(
                f"{kind}_violation",
                Severity.WARN,
                f"GPU {gpu.index}: clocks were held down by {kind} limits for "
                f"{grown / 1e6:.0f} ms of the last {view.elapsed_s:.0f} s. Check {kind} headroom.",
                gpu=gpu.index,
                violation_ms=round(grown / 1e6, 3),
                window_s=round(view.elapsed_s, 3),
                fraction=round(fraction, 6),
                threshold=limit,
            )
        )
    return out


def check_power(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """Board power must read as a positive number."""
    return run_per_gpu("power", ("power_w",), _judge_power, sample, previous, policy)


def _judge_power(view: GpuView) -> list[Finding]:
    power = view.gpu.power_w
    if power is None or power > 0:
        return []
    return [
        finding(
            "power_unreadable",
            Severity.WARN,
            f"GPU {view.gpu.index}: board power reads {power:g} W, which is not a real reading. "
            "Check the driver and the board's power sensors.",
            gpu=view.gpu.index,
            power_w=power,
        )
    ]
