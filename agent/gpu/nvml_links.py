"""NVLink state and pre-Blackwell DL error counters, per link.

The link count is discovered once by walking `nvmlDeviceGetNvLinkState` up to
`NVML_NVLINK_MAX_LINKS` and stopping at InvalidArgument/NotSupported (past the last link, or a
GPU without NVLink); later sweeps read exactly that many links. A DL counter that is NotSupported
on link 0 (Blackwell deprecates them) is skipped for all links until the re-probe time.
"""

from __future__ import annotations

from agent.gpu.nvml_errors import classify, error_code
from agent.gpu.nvml_readers import ReadContext
from agent.model import NvLinkSample, ReadStatus

# (NvLinkSample field, NVML_NVLINK_ERROR_* constant)
DL_COUNTERS: tuple[tuple[str, str], ...] = (
    ("replay_errors", "NVML_NVLINK_ERROR_DL_REPLAY"),
    ("recovery_errors", "NVML_NVLINK_ERROR_DL_RECOVERY"),
    ("crc_flit_errors", "NVML_NVLINK_ERROR_DL_CRC_FLIT"),
    ("crc_data_errors", "NVML_NVLINK_ERROR_DL_CRC_DATA"),
)


def _link_states(c: ReadContext) -> list[int]:
    known = c.state.link_count
    limit = known if known is not None else int(c.n.NVML_NVLINK_MAX_LINKS)
    end_codes = (c.codes.invalid_argument, c.codes.not_supported)
    states: list[int] = []
    for link in range(limit):
        try:
            states.append(int(c.n.nvmlDeviceGetNvLinkState(c.h, link)))
        except Exception as exc:
            if known is None and error_code(exc, c.n) in end_codes:
                break  # past the last link (or no NVLink at all)
            raise
    if known is None:
        if not states:
            raise c.n.NVMLError(c.codes.not_supported)  # no NVLink on this GPU
        c.state.link_count = len(states)
    return states


def _counter_column(c: ReadContext, name: str, constant: str, count: int) -> list[int | None]:
    key = f"nvlinks.{name}"
    cached = c.state.cached_unsupported(key, c.now)
    if cached is not None:
        c.unavailable[key] = cached
        return [None] * count
    counter = getattr(c.n, constant)
    column: list[int | None] = []
    for link in range(count):
        try:
            column.append(int(c.n.nvmlDeviceGetNvLinkErrorCounter(c.h, link, counter)))
        except Exception as exc:
            why = classify(exc, c.n, c.codes, where=f"link {link}")
            if why.status is ReadStatus.GPU_LOST:
                raise
            if why.status is ReadStatus.NOT_SUPPORTED and link == 0:
                c.state.remember_unsupported(key, why, c.now)
                c.unavailable[key] = why
                return [None] * count
            c.unavailable.setdefault(key, why)
            column.append(None)
    return column


def read_nvlinks(c: ReadContext) -> tuple[object, ...]:
    """`nvlinks`: one NvLinkSample per link, with its DL counters where supported."""
    states = _link_states(c)
    columns = {
        name: _counter_column(c, name, constant, len(states)) for name, constant in DL_COUNTERS
    }
    enabled = int(c.n.NVML_FEATURE_ENABLED)
    links = tuple(
        NvLinkSample(
            link=i,
            up=state == enabled,
            replay_errors=columns["replay_errors"][i],
            recovery_errors=columns["recovery_errors"][i],
            crc_flit_errors=columns["crc_flit_errors"][i],
            crc_data_errors=columns["crc_data_errors"][i],
        )
        for i, state in enumerate(states)
    )
    return (links,)
