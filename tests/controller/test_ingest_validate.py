"""Validation of untrusted wire input (pure): every rule has a case that must be refused."""

from __future__ import annotations

import math
from collections.abc import Callable

import grpc
import pytest
from hypothesis import given, settings, strategies as st

from controller.server.validate import WireError, check_hello, check_message, check_node_name
from protos.gpufleet.v1 import fleet_pb2
from tests.controller.conftest import hello, report, xid

Mutation = Callable[[fleet_pb2.AgentMessage], None]


def _set(path: str, value: object) -> Mutation:
    def apply(msg: fleet_pb2.AgentMessage) -> None:
        target: object = msg
        *parents, leaf = path.split(".")
        for name in parents:
            target = target[int(name)] if name.isdigit() else getattr(target, name)  # type: ignore[index]
        setattr(target, leaf, value)
    return apply


def test_valid_messages_pass() -> None:
    assert check_hello(hello("gpu-a01.rack3")).node == "gpu-a01.rack3"
    assert check_message(report(1, findings=3), "n") == "report"
    assert check_message(xid(2), "n") == "event"


@pytest.mark.parametrize("name", ["", "-lead", "a" * 64, "has space", "semi;colon", "ü", "a/b"])
def test_bad_node_names_are_refused(name: str) -> None:
    with pytest.raises(WireError) as err:
        check_node_name(name)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("mutate", "expected"), [
    (_set("report.verdict", 42), "unknown severity"),
    (_set("report.action", 17), "unknown action"),
    (_set("report.sampled_at", math.nan), "finite"),
    (_set("report.directive_id", "d" * 300), "directive_id"),
    (_set("report.findings.0.message", "m" * 5000), "limit 4096"),
    (_set("report.findings.0.severity", 9), "unknown severity"),
    (_set("sent_at", math.inf), "finite"),
    (_set("seq", 0), "seq > 0"),
])
def test_report_violations_are_invalid_argument(mutate: Mutation, expected: str) -> None:
    msg = report(1, findings=2)
    mutate(msg)
    with pytest.raises(WireError) as err:
        check_message(msg, "n")
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in err.value.message


def test_finding_evidence_is_bounded() -> None:
    msg = report(1, findings=1)
    for i in range(40):
        msg.report.findings[0].evidence[f"k{i}"].integer = i
    with pytest.raises(WireError, match="evidence entries"):
        check_message(msg, "n")
    msg = report(1, findings=1)
    msg.report.findings[0].evidence["x"].number = math.nan
    with pytest.raises(WireError, match="finite"):
        check_message(msg, "n")


def test_event_and_result_rules() -> None:
    empty = fleet_pb2.AgentMessage(seq=1)
    empty.event.SetInParent()
    with pytest.raises(WireError, match="no kind"):
        check_message(empty, "n")
    exit_ = fleet_pb2.AgentMessage(seq=1)
    exit_.event.rank_exit.stderr_tail = "e" * 20000
    with pytest.raises(WireError, match="16384"):
        check_message(exit_, "n")
    result = fleet_pb2.AgentMessage(seq=1)
    result.result.ok = True
    with pytest.raises(WireError, match="directive_id is empty"):
        check_message(result, "n")
    diverged = fleet_pb2.AgentMessage(seq=1)
    diverged.event.progress.loss = math.nan  # a diverging run is still worth reporting
    assert check_message(diverged, "n") == "event"
    assert check_message(fleet_pb2.AgentMessage(seq=0, event=diverged.event), "n") == "event"


def test_hello_rules() -> None:
    with pytest.raises(WireError, match="first message"):
        check_hello(report(1))
    many = hello("n", gpus=65)
    with pytest.raises(WireError, match="65 GPUs"):
        check_hello(many)
    long_sku = hello("n")
    long_sku.hello.sku = "s" * 300
    with pytest.raises(WireError, match="sku"):
        check_hello(long_sku)


def test_claiming_another_node_is_permission_denied() -> None:
    msg = report(1)
    msg.node = "other"
    with pytest.raises(WireError) as err:
        check_message(msg, "mine")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED
    msg.node = "mine"
    assert check_message(msg, "mine") == "report"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_either_fail_to_parse_or_validate_cleanly(data: bytes) -> None:
    try:
        msg = fleet_pb2.AgentMessage.FromString(data)
    except Exception:
        return
    try:
        check_message(msg, "n")
    except WireError as err:
        assert err.code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
