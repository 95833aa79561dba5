"""Write every generated file: the Grafana dashboards, the Prometheus rule file and the
metric/alert reference.

    python -m dashboards.build           # (re)write the files
    python -m dashboards.build --check   # exit 1 and name the files that are out of date
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dashboards import burnin, fleet_overview, node_detail, training_run
from dashboards.alerts import render_rules
from dashboards.grafana import dump
from dashboards.reference import render_reference

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = Path("dashboards/json")
RULES_FILE = Path("deploy/prometheus/gpufleet-rules.yml")
REFERENCE_FILE = Path("dashboards/REFERENCE.md")

DASHBOARDS: Mapping[str, Callable[[], dict[str, Any]]] = {
    "fleet-overview.json": fleet_overview.build,
    "node-detail.json": node_detail.build,
    "training-run.json": training_run.build,
    "burnin.json": burnin.build,
}


def outputs() -> dict[Path, str]:
    """Every generated file (path relative to the repository root) and its content."""
    files = {DASHBOARD_DIR / name: dump(make()) for name, make in DASHBOARDS.items()}
    files[RULES_FILE] = render_rules()
    files[REFERENCE_FILE] = render_reference()
    return files


def stale(root: Path = REPO) -> list[Path]:
    """Generated files that are missing or differ from what the code generates now."""
    out = []
    for rel, text in outputs().items():
        path = root / rel
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


def write(root: Path = REPO) -> list[Path]:
    """Write every generated file that changed; returns those written."""
    written = []
    for rel, text in outputs().items():
        path = root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(rel)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report out-of-date files")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for rel in out_of_date:
            print(f"out of date: {rel} (run python -m dashboards.build)", file=sys.stderr)
        return 1 if out_of_date else 0
    for rel in write():
        print(f"wrote {rel}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
