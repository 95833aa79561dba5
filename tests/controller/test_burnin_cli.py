"""`gpufleet burnin` without a controller: argument parsing, JSON and table rendering, exit rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import ClassVar

import pytest
from rich.console import Console
from typer.testing import CliRunner

from controller import burnin_cli
from controller.burnin_cli import (
    failed_names,
    parse_node_options,
    report_json,
    report_table,
    size_label,
)
from controller.operator_cli import EXIT_USAGE, get_app
from protos.gpufleet.v1 import fleet_pb2 as pb

M = 1 << 20


def result(node: str, busbw: float, *, passed: bool = True, check: str = "burnin",
           members: tuple[str, ...] = (), sizes: tuple[tuple[int, float], ...] = ()) -> pb.BurninNodeResult:
    r = pb.BurninNodeResult(
        node=node, members=members or (node,), passed=passed, check=check,
        severity=pb.SEVERITY_OK if passed else pb.SEVERITY_CRITICAL, busbw_gbps=busbw,
        cohort_median_gbps=4.0, threshold_gbps=2.0, message="as expected" if passed else
        f"all-reduce busbw {busbw:.2f} GB/s is 75% below its cohort's median", backend="gloo",
        evidence_id="7", duration_s=1.25)
    for size, value in sizes:
        r.sizes.add(bytes=size, time_us=10.0, algbw_gbps=value / 2, busbw_gbps=value)
    return r


REPORT = pb.BurninReport(
    nodes=[result("n1", 4.0, sizes=((M, 2.0), (4 * M, 4.0))),
           result("n2", 1.0, passed=False, check="burnin_outlier",
                  sizes=((M, 0.5), (4 * M, 0.9), (4 * M, 1.0), (4 * M, 1.5))),
           pb.BurninNodeResult(node="n3", members=["n3"], check="burnin_skipped",
                               severity=pb.SEVERITY_UNKNOWN, message="node is not connected")],
    groups=[result("domain:d0", 3.0, members=("n1", "n4"), sizes=((4 * M, 3.0),))],
    notes=["n5: no multi-node group (alone in NVLink domain d2 in this pass)"])


def test_node_options_group_per_node() -> None:
    assert parse_node_options(["a:slowdown=4", "b:hang=1", "a:x=y"]) == {
        "a": "slowdown=4;x=y", "b": "hang=1"}
    for bad in ("slowdown=4", "a:slowdown", ":x=1"):
        with pytest.raises(ValueError, match="expected NODE:key=value"):
            parse_node_options([bad])


def test_sizes_are_labelled_in_binary_units() -> None:
    assert [size_label(n) for n in (M, 64 * M, 1 << 30, 4096, 1000)] == ["1M", "64M", "1G", "4K",
                                                                          "1000B"]


def test_json_has_the_documented_shape() -> None:
    body = report_json(REPORT)
    assert json.loads(json.dumps(body)) == body
    n2 = body["nodes"][1]
    assert {"node", "passed", "severity", "check", "busbw_gbps", "cohort_median_gbps", "message",
            "sizes"} <= set(n2)
    assert (n2["passed"], n2["severity"], n2["check"]) == (False, "critical", "burnin_outlier")
    assert n2["sizes"][0] == {"bytes": M, "time_us": 10.0, "algbw_gbps": 0.25, "busbw_gbps": 0.5,
                              "wrong": 0}
    skipped = body["nodes"][2]
    assert (skipped["severity"], skipped["cohort_median_gbps"], skipped["sizes"]) == (
        "unknown", None, [])
    assert body["groups"][0]["members"] == ["n1", "n4"]
    assert body["notes"] == list(REPORT.notes)


def test_table_shows_busbw_per_size_the_median_and_the_outlier() -> None:
    console = Console(record=True, width=220, color_system=None)
    console.print(report_table(REPORT))
    text = console.export_text()
    header = next(line for line in text.splitlines() if "NODE / GROUP" in line)
    assert [c for c in ("RESULT", "1M", "4M", "BUSBW", "COHORT MEDIAN", "MESSAGE")
            if c in header] == ["RESULT", "1M", "4M", "BUSBW", "COHORT MEDIAN", "MESSAGE"]
    n2 = next(line for line in text.splitlines() if line.strip().startswith("│ n2"))
    assert "outlier" in n2 and "75% below" in n2
    assert " 1 " in n2  # 4M: the median of its three repeats (0.9, 1.0, 1.5)
    assert "domain:d0 (2 nodes)" in text and "skipped" in text
    assert "2 passed, 2 not" in text and "note: n5: no multi-node group" in text


def test_failures_exit_1_and_skipped_nodes_count_only_when_named() -> None:
    assert failed_names(REPORT, named=True) == ["n2", "n3"]
    assert failed_names(REPORT, named=False) == ["n2"]


def test_usage_errors_say_what_is_wrong() -> None:
    runner = CliRunner()
    both = runner.invoke(get_app(), ["burnin", "--all", "n1"])
    assert both.exit_code == EXIT_USAGE
    assert "name the nodes to burn in, or give --all (not both)" in both.stderr
    bad = runner.invoke(get_app(), ["burnin", "n1", "--option", "slowdown=4"])
    assert bad.exit_code == EXIT_USAGE
    assert "--option 'slowdown=4': expected NODE:key=value" in bad.stderr


class FakeCall:
    """A finished Burnin stream: just the report."""

    def __init__(self, report: pb.BurninReport) -> None:
        self.updates = [pb.BurninUpdate(result=report)]

    def __iter__(self) -> Iterator[pb.BurninUpdate]:
        return iter(self.updates)

    def cancel(self) -> bool:
        return True


class FakeAdmin:
    """The FleetAdmin stub seam: records the request, answers with a report with one pair."""

    requests: ClassVar[list[pb.BurninRequest]] = []

    def __init__(self, channel: object) -> None:
        pass

    def Burnin(self, request: pb.BurninRequest, *, timeout: float | None,
               metadata: object) -> FakeCall:
        self.requests.append(request)
        return FakeCall(pb.BurninReport(
            nodes=[result("a1", 4.0), result("b1", 4.0)],
            groups=[result("pair:a1+b1", 1.0, members=("a1", "b1"))]))


def test_cross_domain_flag_asks_for_the_pair_pass_and_prints_the_pairs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(burnin_cli, "_stub", FakeAdmin)
    FakeAdmin.requests = []
    out = CliRunner().invoke(get_app(), ["--controller", "127.0.0.1:1", "--insecure", "burnin", "--all",
                                         "--cross-domain", "--json"])
    assert out.exit_code == 0, out.output
    (request,) = FakeAdmin.requests
    assert request.cross_domain and request.all and not request.multi_node  # the server implies
    assert [g["node"] for g in json.loads(out.stdout)["groups"]] == ["pair:a1+b1"]
