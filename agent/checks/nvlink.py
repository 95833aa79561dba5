"""NVLink: every expected link Up, DL error growth (pre-Blackwell), NVLink5 counters (Blackwell).

DCGM's NVLink watch: a link Down is CRITICAL; DL replay or recovery growth >= 1 in the window is
CRITICAL; CRC growth WARNs, and is CRITICAL at >= 100 per second. On NVLink5 a failed link
recovery (cumulative) is CRITICAL, a successful one WARNs, and growth of any error counter is
CRITICAL. Per-link counters that read None (deprecated on Blackwell) are simply not judged.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.checks.readings import GpuView, delta, finding, run_per_gpu
from agent.model import NVLINK5_COUNTERS, Action, Finding, NodeSample, NvLinkSample, Severity
from agent.policy import Policy

# NVLink5 counters by the lower-case suffix of NVML_FI_DEV_NVLINK_COUNT_<NAME>, summed over links.
NVLINK5_RECOVERY_FAILED = "link_recovery_failed_events"
NVLINK5_RECOVERY_SUCCESSFUL = "link_recovery_successful_events"
NVLINK5_ERROR_COUNTERS: frozenset[str] = frozenset(NVLINK5_COUNTERS) - {
    NVLINK5_RECOVERY_SUCCESSFUL, NVLINK5_RECOVERY_FAILED, "link_recovery_events",
}  # the recoveries are judged on their own terms below
_NVML_PREFIX = "nvml_fi_dev_nvlink_count_"


def check_nvlink_state(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Every listed link Up, and at least the SKU's expected number of links Up."""
    return run_per_gpu("nvlink_state", ("nvlinks",), _judge_state, sample, previous, policy)


def _judge_state(view: GpuView) -> list[Finding]:
    links = view.gpu.nvlinks
    if links is None:
        return []
    down = [link.link for link in links if not link.up]
    up = len(links) - len(down)
    expected = view.limits.expected_nvlinks
    if not down and up >= expected:
        return []
    i = view.gpu.index
    detail = f"link(s) {', '.join(map(str, down))} Down" if down else "no link Down"
    return [
        finding(
            "nvlink_down",
            Severity.CRITICAL,
            f"GPU {i}: {up} NVLink(s) Up of {max(expected, len(links))} expected ({detail}). "
            "Drain and reboot the node; if links stay down, check the NVSwitch/cable tray.",
            gpu=i,
            action=Action.REBOOT_NODE,
            links_up=up,
            links_expected=expected,
            links_down=",".join(map(str, down)) or None,
        )
    ]


def check_nvlink_errors(
    sample: NodeSample, previous: NodeSample | None, policy: Policy
) -> list[Finding]:
    """Growth of per-link DL replay, recovery and CRC counters over the window."""
    # An unreadable `nvlinks` is reported once, by check_nvlink_state.
    return run_per_gpu("nvlink_errors", (), _judge_errors, sample, previous, policy)


_DL_COUNTERS = ("replay_errors", "recovery_errors", "crc_flit_errors", "crc_data_errors")


def _growth(
    links: tuple[NvLinkSample, ...], before: tuple[NvLinkSample, ...]
) -> dict[str, tuple[int, list[int]]]:
    """Per DL counter: summed growth over the links, and which links grew (one pass)."""
    out: dict[str, tuple[int, list[int]]] = {}
    earlier = {link.link: link for link in before}
    for link in links:
        old = earlier.get(link.link)
        if old is None or old == link:  # unchanged links (the healthy case) cost one compare
            continue
        for attr in _DL_COUNTERS:
            d = delta(getattr(link, attr), getattr(old, attr))
            if d:
                total, grew = out.get(attr, (0, []))
                out[attr] = (total + d, [*grew, link.link])
    return out


def _judge_errors(view: GpuView) -> list[Finding]:
    gpu, prev, limits = view.gpu, view.prev, view.limits
    if prev is None or view.elapsed_s is None or gpu.nvlinks is None or prev.nvlinks is None:
        return []
    if gpu.nvlinks is prev.nvlinks:
        return []
    growth = _growth(gpu.nvlinks, prev.nvlinks)
    if not growth:
        return []
    i, out = gpu.index, []
    for attr, label, threshold in (
        ("replay_errors", "replay", limits.nvlink_replay_critical_delta),
        ("recovery_errors", "recovery", limits.nvlink_recovery_critical_delta),
    ):
        grown, grew = growth.get(attr, (0, []))
        if grown >= threshold:
            out.append(finding(
                f"nvlink_{label}", Severity.CRITICAL,
                f"GPU {i}: {grown} NVLink {label} error(s) in {view.elapsed_s:.0f} s on link(s) "
                f"{', '.join(map(str, grew))}. Drain the GPU and reset it.",
                gpu=i, action=Action.RESET_GPU, errors=grown, links=",".join(map(str, grew)),
                window_s=round(view.elapsed_s, 3), threshold=threshold,
            ))  # fmt: skip
    flit, flit_links = growth.get("crc_flit_errors", (0, []))
    data, data_links = growth.get("crc_data_errors", (0, []))
    crc = flit + data
    if crc >= limits.nvlink_crc_warn_delta:
        per_s = crc / view.elapsed_s
        critical = per_s >= limits.nvlink_crc_critical_per_s
        links = ",".join(map(str, sorted(set(flit_links + data_links))))
        out.append(finding(
            "nvlink_crc", Severity.CRITICAL if critical else Severity.WARN,
            f"GPU {i}: {crc} NVLink CRC error(s) in {view.elapsed_s:.0f} s ({per_s:.1f}/s) on "
            f"link(s) {links}. " + ("Drain the GPU and reset it." if critical else
                                    "Watch the link; it is retrying transfers."),
            gpu=i, action=Action.RESET_GPU if critical else Action.NONE, errors=crc,
            per_s=round(per_s, 3), links=links, window_s=round(view.elapsed_s, 3),
            warn_delta=limits.nvlink_crc_warn_delta,
            critical_per_s=limits.nvlink_crc_critical_per_s,
        ))  # fmt: skip
    return out


def check_nvlink5(sample: NodeSample, previous: NodeSample | None, policy: Policy) -> list[Finding]:
    """NVLink5 (Blackwell) field counters: failed/successful link recoveries and error growth."""
    fields = ("nvlink5_counters",)
    return run_per_gpu("nvlink5_errors", fields, _judge_nvlink5, sample, previous, policy)


def _normalised(counters: Mapping[str, int] | None) -> dict[str, int]:
    if counters is None:
        return {}
    return {k.lower().removeprefix(_NVML_PREFIX): v for k, v in counters.items()}


def _judge_nvlink5(view: GpuView) -> list[Finding]:
    now = _normalised(view.gpu.nvlink5_counters)
    if not now:
        return []
    i, out = view.gpu.index, []
    failed = now.get(NVLINK5_RECOVERY_FAILED, 0)
    if failed > 0:
        out.append(finding(
            "nvlink5_recovery_failed", Severity.CRITICAL,
            f"GPU {i}: {failed} NVLink link recovery attempt(s) failed. Drain the GPU and "
            "reset it; if it recurs, check the NVLink switch tray and cables.",
            gpu=i, action=Action.RESET_GPU, link_recovery_failed_events=failed,
        ))  # fmt: skip
    succeeded = now.get(NVLINK5_RECOVERY_SUCCESSFUL, 0)
    if succeeded > 0:
        out.append(finding(
            "nvlink5_recovery_successful", Severity.WARN,
            f"GPU {i}: NVLink recovered a link {succeeded} time(s). Watch for repeats.",
            gpu=i, link_recovery_successful_events=succeeded,
        ))  # fmt: skip
    before = _normalised(view.prev.nvlink5_counters) if view.prev is not None else {}
    threshold = view.limits.nvlink5_error_critical_delta
    grown = {
        name: d
        for name in sorted(NVLINK5_ERROR_COUNTERS & now.keys() & before.keys())
        if (d := delta(now[name], before[name])) is not None and d >= threshold
    }
    if grown:
        listing = ", ".join(f"{name} +{d}" for name, d in grown.items())
        out.append(finding(
            "nvlink5_errors", Severity.CRITICAL,
            f"GPU {i}: NVLink error counters grew ({listing}). Drain the GPU and reset it.",
            gpu=i, action=Action.RESET_GPU, threshold=threshold,
            window_s=round(view.elapsed_s, 3) if view.elapsed_s else None, **grown,
        ))  # fmt: skip
    return out
