"""The `--simulate SPEC` grammar: inline and TOML forms, fault items, and every-problem errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from agent.gpu.sim_fault_items import FaultParseError, parse_duration, parse_fault_item
from agent.gpu.sim_faults import FaultKind, SimFault
from agent.gpu.sim_spec import SimSpec, SimSpecError, parse_sim_spec, spec_problems

GOOD_INLINE: list[tuple[str, dict[str, object]]] = [
    ("h100_sxm", {"sku": "h100_sxm", "nodes": 1, "gpus_per_node": 8, "seed": 0, "faults": ()}),
    ("gb300:nodes=36", {"sku": "gb300", "nodes": 36, "gpus_per_node": 4, "nodes_per_domain": 18}),
    ("gb300:nodes=4,domain_size=2,load=0.5", {"nodes_per_domain": 2, "load": 0.5}),
    (" h100_sxm : nodes = 2 , seed = 9 ", {"nodes": 2, "seed": 9}),
    ("h100_sxm:gpus=4", {"gpus_per_node": 4}),
    ("h100_sxm:inbox=/var/tmp/sim-faults", {"inbox": "/var/tmp/sim-faults"}),
    (
        "h100_sxm:gpus=8,seed=7,fault=ecc_dbe@gpu3,fault=xid79@gpu1+30s",
        {
            "seed": 7,
            "faults": (
                SimFault(FaultKind.ECC_DBE, gpu=3),
                SimFault(FaultKind.XID, gpu=1, at=30.0, params={"code": 79}),
            ),
        },
    ),
    (
        "h100_sxm:nodes=3,fault=thermal_slowdown@h100-n002/gpu0+1m;duration=90",
        {
            "faults": (
                SimFault(
                    FaultKind.THERMAL_SLOWDOWN,
                    gpu=0,
                    node="h100-n002",
                    at=60.0,
                    params={"duration": 90.0},
                ),
            )
        },
    ),
    (
        "h100_sxm:fault=ib_port_down@mlx5_3+500ms",
        {"faults": (SimFault(FaultKind.IB_PORT_DOWN, at=0.5, params={"rail": 3}),)},
    ),
    (
        "h100_sxm:fault=recovery_action@gpu0;action=node_reboot",
        {"faults": (SimFault(FaultKind.RECOVERY_ACTION, gpu=0, params={"action": 2}),)},
    ),
    (
        "gb300:nodes=2,fault=fabric_incomplete@gb300-d0-t01;health=degraded_bw",
        {
            "faults": (
                SimFault(
                    FaultKind.FABRIC_INCOMPLETE,
                    node="gb300-d0-t01",
                    params={"health": "degraded_bw"},
                ),
            )
        },
    ),
    (
        "h100_sxm:fault=ecc_dbe@gpu2;count=3;remap=false",
        {"faults": (SimFault(FaultKind.ECC_DBE, gpu=2, params={"count": 3, "remap": False}),)},
    ),
]


@pytest.mark.parametrize(("text", "expected"), GOOD_INLINE)
def test_good_inline_specs(text: str, expected: dict[str, object]) -> None:
    spec = parse_sim_spec(text)
    for attr, value in expected.items():
        assert getattr(spec, attr) == value, attr


# (spec, substrings that must each appear in some problem, exact number of problems)
BAD_INLINE: list[tuple[str, list[str], int]] = [
    ("", ["missing SKU"], 1),
    ("h200", ["unknown SKU 'h200'", "gb300, h100_sxm"], 1),
    ("h100_sxm:nodes", ["not KEY=VALUE"], 1),
    ("h100_sxm:nodes=abc", ["nodes must be an integer"], 1),
    ("h100_sxm:nodes=2,nodes=3", ["given twice"], 1),
    ("h100_sxm:load=2", ["load must be between 0 and 1"], 1),
    ("h100_sxm:load=x", ["load must be a number"], 1),
    ("h100_sxm:domain_size=2", ["each h100_sxm node is its own NVLink domain"], 1),
    ("gb300:domain_size=19", ["domain_size must be 1-18"], 1),
    ("h100_sxm:fault=ecc_dbe", ["ecc_dbe needs a GPU"], 1),
    ("h100_sxm:fault=xid79@gpu8", ["gpu 8 out of range"], 1),
    ("h100_sxm:gpus=2,fault=xid79@gpu2", ["gpu 2 out of range", "gpus 0-1"], 1),
    ("h100_sxm:fault=bogus@gpu1", ["unknown fault kind 'bogus'"], 1),
    ("h100_sxm:fault=xid79@gpu1+soon", ["bad time 'soon'"], 1),
    ("h100_sxm:fault=fabric_incomplete", ["does not apply to h100_sxm"], 1),
    ("h100_sxm:fault=xid79@h100-n009/gpu1", ["no node 'h100-n009'"], 1),
    ("h100_sxm:fault=nvlink_down@gpu1;link=18", ["link 18 out of range"], 1),
    ("h100_sxm:fault=ib_port_down@mlx5_8", ["rail 8 out of range"], 1),
    ("h100_sxm:fault=ib_port_down@gpu1", ["applies to a node, not a GPU"], 1),
    ("h100_sxm:fault=xid@gpu1", ["xid needs code="], 1),
    ("h100_sxm:fault=xid79@gpu1;code=48", ["give the XID code once"], 1),
    ("h100_sxm:fault=pcie_width@gpu1;width=3", ["width must be one of"], 1),
    ("h100_sxm:fault=recovery_action@gpu1;action=explode", ["action must be int"], 1),
    ("h100_sxm:fault=ecc_dbe@gpu1;count=-1;wat=2", ["count must be in", "no parameter 'wat'"], 1),
    ("gb300:fault=fabric_incomplete;state=1;health=route_recovery", ["not both"], 1),
    ("h100_sxm:fault=ecc_dbe@gpu1;count", ["not NAME=VALUE"], 1),
    ("h100_sxm:fault=xid79@a/b/gpu1", ["bad node name"], 1),
    (
        "h100_sxm:nodes=0,gpus=9,fault=xid79@gpu12,fault=bogus,foo=1",
        ["nodes must be", "gpus must be 1-8", "gpu 12 out of range", "bogus", "unknown key 'foo'"],
        5,
    ),
]


@pytest.mark.parametrize(("text", "needles", "count"), BAD_INLINE)
def test_bad_inline_specs_list_every_problem(text: str, needles: list[str], count: int) -> None:
    with pytest.raises(SimSpecError) as info:
        parse_sim_spec(text)
    problems = info.value.problems
    assert len(problems) == count, problems
    for needle in needles:
        assert any(needle in p for p in problems), (needle, problems)
    assert all(p in str(info.value) for p in problems)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), ("1.5h", 5400.0), (".5s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert math.isclose(parse_duration(text), seconds)


@pytest.mark.parametrize("text", ["", "-1", "1d", "s", "1e3", "nan", "1..2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad time"):
        parse_duration(text)


@pytest.mark.parametrize(
    "item",
    [
        "ecc_dbe@gpu3",
        "xid79@gpu1+30s",
        "xid13@h100-n004/gpu7+0.25s",
        "nvlink_errors@gpu2;link=4;rate=2.5",
        "ib_port_down@h100-n001/mlx5_2+1h",
        "firmware_drift;vbios=96.00.11.00.01;driver=570.172.08",
        "slow@gpu0;factor=0.3",
        "thermal_slowdown@gpu0+12.345678s;duration=0.001",
    ],
)
def test_fault_text_round_trips(item: str) -> None:
    fault = parse_fault_item(item)
    assert parse_fault_item(fault.text()) == fault


def test_fault_parse_error_lists_every_problem() -> None:
    with pytest.raises(FaultParseError) as info:
        parse_fault_item("xid@gpu1+later;rate=1")
    assert len(info.value.problems) == 3  # bad time, unknown parameter, missing code


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (SimFault(FaultKind.XID, gpu=0), "xid needs code="),
        (SimFault(FaultKind.ECC_DBE), "ecc_dbe needs a GPU"),
        (SimFault(FaultKind.ECC_DBE, gpu=9), "gpu 9 out of range"),
        (SimFault(FaultKind.SLOW, params={"factor": 7.0}), "factor must be in"),
        (SimFault(FaultKind.SLOW, params={"speed": 1}), "no parameter 'speed'"),
        (SimFault(FaultKind.REMAP_FAILURE, gpu=0, at=-1.0), "at must be between"),
    ],
)
def test_faults_built_in_code_are_validated_too(fault: SimFault, needle: str) -> None:
    assert spec_problems(SimSpec(sku="h100_sxm")) == []
    problems = spec_problems(SimSpec(sku="h100_sxm", faults=(fault,)))
    assert any(needle in p for p in problems), problems


def _write(tmp_path: Path, text: str, name: str = "sim.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_toml_file_with_faults_and_relative_inbox(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
sku = "gb300"
nodes = 36
seed = 7
domain_size = 18
inbox = "faults.inbox"

[[fault]]
kind = "xid79"
node = "gb300-d1-t04"
gpu = 2
at = "2m"

[[fault]]
kind = "nvlink_errors"
gpu = 0
at = 30
link = 5
rate = 3.5
""",
    )
    spec = parse_sim_spec(path)
    assert (spec.sku, spec.nodes, spec.seed, spec.nodes_per_domain) == ("gb300", 36, 7, 18)
    assert spec.inbox == str(tmp_path / "faults.inbox")
    assert spec.faults == (
        SimFault(FaultKind.XID, gpu=2, node="gb300-d1-t04", at=120.0, params={"code": 79}),
        SimFault(FaultKind.NVLINK_ERRORS, gpu=0, at=30.0, params={"link": 5, "rate": 3.5}),
    )


def test_toml_file_problems_are_all_listed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
nodes = "many"
colour = "blue"

[[fault]]
kind = "ecc_dbe"
gpu = "three"
at = true
bogus = 1

[[fault]]
gpu = 1
""",
    )
    with pytest.raises(SimSpecError) as info:
        parse_sim_spec(path)
    text = str(info.value)
    for needle in (
        "unknown key 'colour'",
        "missing key 'sku'",
        "gpu must be an integer",
        "at must be seconds",
        "no parameter 'bogus'",
        "fault 2: needs kind",
    ):
        assert needle in text


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("sku = ", "sim.toml"),  # TOML syntax error names the file
        ("sku = 'h100_sxm'\nnodes = 1.5\n", "nodes must be an integer"),
        ("sku = 'h100_sxm'\nfault = 3\n", "array of tables"),
        ("sku = 'h100_sxm'\ninbox = 5\n", "inbox must be a path"),
    ],
)
def test_bad_toml_files(tmp_path: Path, content: str, needle: str) -> None:
    with pytest.raises(SimSpecError, match=needle):
        parse_sim_spec(_write(tmp_path, content))


def test_missing_and_oversized_toml_files(tmp_path: Path) -> None:
    with pytest.raises(SimSpecError, match="cannot read"):
        parse_sim_spec(str(tmp_path / "absent.toml"))
    big = _write(tmp_path, "# " + "x" * (1 << 20) + "\nsku = 'h100_sxm'\n", "big.toml")
    with pytest.raises(SimSpecError, match="larger than"):
        parse_sim_spec(big)
