"""Optional: type-check the generated dashboards against Grafana's own TypeScript schema
(npm @grafana/schema, the version matching the SDK's Grafana 11.6 model), since no Grafana
server can be installed to import them. Skips unless node is on PATH and the pinned packages
are installed: `npm ci --prefix dashboards/schema-check` (CI has no node by default)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.dashboards.docs import DASHBOARD_DIR, REPO

CHECK_DIR = REPO / "dashboards" / "schema-check"
NODE_MODULES = CHECK_DIR / "node_modules"
TSC = NODE_MODULES / "typescript" / "bin" / "tsc"


def ts_module(json_path: Path) -> str:
    name = json_path.stem.replace("-", "_")
    return (
        "import type { LooseDashboard } from './loose';\n"
        f"export const {name}: LooseDashboard = {json_path.read_text(encoding='utf-8')};\n"
    )


def test_dashboards_type_check_against_grafana_schema(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node not on PATH: optional schema check skipped")
    if not (TSC.is_file() and (NODE_MODULES / "@grafana" / "schema").is_dir()):
        pytest.skip("run `npm ci --prefix dashboards/schema-check` to enable the schema check")
    (tmp_path / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    shutil.copy(CHECK_DIR / "loose.ts", tmp_path / "loose.ts")
    files = []
    for path in sorted(DASHBOARD_DIR.glob("*.json")):
        (tmp_path / f"{path.stem}.ts").write_text(ts_module(path))
        files.append(f"{path.stem}.ts")
    planted = ts_module(DASHBOARD_DIR / "burnin.json").replace(
        '"graphTooltip": 1', '"graphTooltip": 7', 1
    ).replace("export const burnin", "export const planted")  # fmt: skip
    (tmp_path / "planted.ts").write_text(planted)

    result = subprocess.run(
        [node, str(TSC), "--noEmit", "--strict", "--moduleResolution", "bundler",
         "--module", "esnext", "--target", "es2022", *files, "planted.ts"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if "error TS" in line]

    assert len(files) == 4
    assert [e for e in errors if not e.startswith("planted.ts")] == []
    assert any("graphTooltip" in e or "DashboardCursorSync" in e for e in errors), errors
