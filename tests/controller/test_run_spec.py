"""Run spec loading: the shipped examples load; bad specs list every problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.supervisor.spec import RunSpecError, load_run_spec, run_spec_from_dict

GOOD: dict[str, dict[str, Any]] = {
    "run": {"name": "mini", "command": ["python", "-m", "x", "--steps", "{steps}"], "steps": 20},
    "layout": {"nodes": 4, "ranks_per_node": 2, "ep_size": 4},
    "checkpoint": {"dir": "/tmp/ck", "interval_steps": 5},
    "supervision": {"restart_budget": 2, "spares_per_domain": 1, "hang_timeout_s": 20},
}


def test_good_spec() -> None:
    spec = run_spec_from_dict(GOOD)
    assert spec.world_size == 8 and spec.nodes == 4
    assert spec.argv() == ("python", "-m", "x", "--steps", "20")
    assert spec.hang_timeout_s == 20.0


def test_every_problem_listed_at_once() -> None:
    bad = {
        "run": {"name": "x", "command": [], "colour": "red"},
        "layout": {"nodes": 3, "ranks_per_node": 2, "ep_size": 3},
        "checkpoint": {"interval_steps": 0},
        "extra": {},
    }
    with pytest.raises(RunSpecError) as err:
        run_spec_from_dict(bad)
    text = str(err.value)
    for expected in ("unknown section [extra]", "unknown key run.colour", "missing checkpoint.dir",
                     "run.command must be a non-empty list", "ep_size must be a multiple",
                     "interval_steps must be > 0"):
        assert expected in text
    assert len(err.value.problems) >= 6


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-rf", ".hidden", "dsv3 run", "é",
                                  "x" * 129])
def test_a_run_name_that_cannot_name_files_and_jobs_is_refused(name: str) -> None:
    with pytest.raises(RunSpecError, match=r"run\.name"):
        run_spec_from_dict({**GOOD, "run": {**GOOD["run"], "name": name}})


@pytest.mark.parametrize("name", ["dsv3-671b", "run_2.v1", "A" * 128])
def test_plain_run_names_are_accepted(name: str) -> None:
    assert run_spec_from_dict({**GOOD, "run": {**GOOD["run"], "name": name}}).name == name


def test_wrong_types_are_reported() -> None:
    doc = {**GOOD, "layout": {"nodes": "four", "ranks_per_node": True, "ep_size": 4}}
    with pytest.raises(RunSpecError) as err:
        run_spec_from_dict(doc)
    assert "layout.nodes has the wrong type" in str(err.value)
    assert "layout.ranks_per_node has the wrong type" in str(err.value)


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[run\nname=")
    with pytest.raises(RunSpecError):
        load_run_spec(path)


def test_deepseek_v3_671b_spec_places_on_128_nvl72_domains() -> None:
    from controller.supervisor.placement import Candidate, Layout, Placement, place

    path = Path(__file__).resolve().parents[2] / "examples" / "deepseek_v3_671b.toml"
    spec = load_run_spec(path)
    assert (spec.world_size, spec.ranks_per_node, spec.ep_size, spec.pp_size) == (8192, 4, 64, 16)
    assert spec.nodes == 2048 and spec.dp_size == 512
    argv = spec.argv()
    assert argv[argv.index("--expert-model-parallel-size") + 1] == "64"
    fleet = [Candidate(f"gb300-d{d:03d}-t{t:02d}", f"d{d:03d}", 4)
             for d in range(128) for t in range(18)]
    placement = place(fleet, Layout(spec.world_size, spec.ranks_per_node, spec.ep_size,
                                    spec.spares_per_domain))
    assert isinstance(placement, Placement)
    assert len(placement.nodes) == 2048
    assert all(len(spares) == 2 for spares in placement.spares.values())


@pytest.mark.parametrize("part", ['d={"a":1}', "{nosuch}", "{0}", "{steps"])
def test_a_placeholder_that_cannot_be_filled_is_refused_at_load(part: str) -> None:
    with pytest.raises(RunSpecError, match="placeholder") as err:
        run_spec_from_dict({**GOOD, "run": {**GOOD["run"], "command": ["python", "-c", part]}})
    assert "{{" in str(err.value)  # says how to write a literal brace


def test_escaped_braces_are_literal() -> None:
    spec = run_spec_from_dict({**GOOD, "run": {**GOOD["run"],
                                               "command": ["python", "-c", 'd={{"a":1}}']}})
    assert spec.argv() == ("python", "-c", 'd={"a":1}')
