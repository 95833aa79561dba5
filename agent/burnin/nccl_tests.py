"""Parse nccl-tests' `all_reduce_perf` table into a BurnInResult (used when it is on PATH).

Columns (src/util.cu writeResultHeader): size count type redop root | out-of-place time algbw
busbw #wrong | in-place time algbw busbw #wrong. We keep the out-of-place block, as nccl-tests'
own "Avg bus bandwidth" does for its first block; `#wrong` is summed over both blocks.
"""

from __future__ import annotations

from agent.burnin.spec import BurnInResult, SizeResult


def parse_all_reduce_perf(text: str, world_size: int) -> BurnInResult:
    """Rows of the table → SizeResults; a missing table or footer 'FAILED' → error set."""
    rows: list[SizeResult] = []
    errors: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if "Out of bounds values" in line and "FAILED" in line:
                errors.append(line.lstrip("# "))
            continue
        fields = line.split()
        if len(fields) < 13 or not fields[0].isdigit():
            continue
        try:
            rows.append(SizeResult(
                bytes=int(fields[0]), time_us=float(fields[5]), algbw_gbps=float(fields[6]),
                busbw_gbps=float(fields[7]), wrong=_wrong(fields[8]) + _wrong(fields[12]),
            ))
        except ValueError:
            errors.append(f"unparseable row: {line[:120]}")
    if not rows:
        errors.append("no result rows in all_reduce_perf output")
    return BurnInResult(backend="nccl-tests", world_size=world_size, sizes=tuple(rows),
                        error="; ".join(errors))


def _wrong(field: str) -> int:
    return 0 if field in ("N/A", "0") else int(field)
