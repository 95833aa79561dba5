"""Pure CLI rendering and parsing: tables rendered to text, JSON shapes, argument parsers."""

from __future__ import annotations

import io

import grpc
import pytest
from rich.console import Console, RenderableType

from controller import cli_render as render
from controller.operator_cli import (
    EXIT_ERROR,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    Connection,
    describe_rpc_error,
    is_loopback,
    one_line,
    parse_since,
    parse_target,
)
from protos.gpufleet.v1 import fleet_pb2 as pb

NOW = 1_700_000_000.0


def text_of(renderable: RenderableType) -> str:
    console = Console(record=True, width=200, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "-"), (-1, "-"), (0, "0s"), (59.9, "59s"), (60, "1m"), (7200, "2h"), (200000, "2d")],
)
def test_format_age(seconds: float | None, expected: str) -> None:
    assert render.format_age(seconds) == expected


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (pb.SEVERITY_OK, "ok"),
        (pb.SEVERITY_WARN, "warn"),
        (pb.SEVERITY_CRITICAL, "critical"),
        (pb.SEVERITY_UNKNOWN, "unknown"),
        (pb.SEVERITY_UNSPECIFIED, "unknown"),
    ],
)
def test_severity_names(value: int, name: str) -> None:
    assert render.severity_name(value) == name


def _views() -> list[pb.NodeView]:
    return [
        pb.NodeView(
            name="n1",
            state="ready",
            verdict="ok",
            sku="h100_sxm",
            gpus=8,
            nvlink_domain="d0",
            rack="r1",
            connected=True,
            last_seen=NOW - 5,
        ),
        pb.NodeView(
            name="n2",
            state="drained",
            verdict="critical",
            sku="h100_sxm",
            gpus=7,
            nvlink_domain="d0",
            connected=False,
            last_seen=NOW - 7200,
            state_reason="XID 79 on GPU 3",
        ),
    ]


def test_nodes_table_rows() -> None:
    out = text_of(render.nodes_table(_views(), NOW))
    n1 = next(line for line in out.splitlines() if " n1 " in line)
    n2 = next(line for line in out.splitlines() if " n2 " in line)
    assert "ready" in n1 and "5s" in n1 and "offline" not in n1
    assert "drained" in n2 and "2h (offline)" in n2 and "XID 79 on GPU 3" in n2
    assert "2 nodes" in out


def test_nodes_json_keys() -> None:
    (first, _) = render.nodes_json(_views())
    assert list(first)[:6] == ["name", "state", "verdict", "sku", "gpus", "nvlink_domain"]
    assert first["gpus"] == 8


def _result() -> pb.PreflightResult:
    result = pb.PreflightResult(run="dsv3")
    result.verdicts.add(node="b", admitted=True)
    rejected = result.verdicts.add(node="a", admitted=False)
    rejected.reasons.add(
        check="xid",
        severity=pb.SEVERITY_CRITICAL,
        gpu=0,
        message="XID 79",
        evidence_age_s=125,
        evidence_id="r1",
    )
    rejected.reasons.add(check="lifecycle", severity=pb.SEVERITY_CRITICAL, message="drained")
    result.verdicts[0].notes.add(check="driver_drift", severity=pb.SEVERITY_WARN, message="old")
    return result


def test_preflight_json_shape() -> None:
    assert render.preflight_json(_result()) == {
        "run": "dsv3",
        "admitted": ["b"],
        "rejected": [
            {
                "node": "a",
                "reasons": [
                    {
                        "check": "xid",
                        "severity": "critical",
                        "gpu": 0,
                        "message": "XID 79",
                        "evidence_age_s": 125.0,
                        "evidence_id": "r1",
                    },
                    {
                        "check": "lifecycle",
                        "severity": "critical",
                        "gpu": None,
                        "message": "drained",
                        "evidence_age_s": 0.0,
                        "evidence_id": "",
                    },
                ],
            }
        ],
        "notes": [
            {
                "node": "b",
                "notes": [
                    {
                        "check": "driver_drift",
                        "severity": "warn",
                        "gpu": None,
                        "message": "old",
                        "evidence_age_s": 0.0,
                        "evidence_id": "",
                    }
                ],
            }
        ],
    }


def test_preflight_table_lists_admitted_first_then_every_reason() -> None:
    lines = text_of(render.preflight_table(_result())).splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert " b " in rows[0] and "admitted" in rows[0]
    assert "note" in rows[1] and "driver_drift" in rows[1] and "warn" in rows[1]
    assert " a " in rows[2] and "rejected" in rows[2] and "xid" in rows[2]
    assert "2m" in rows[2] and " 0 " in rows[2]
    assert "rejected" in rows[3] and "lifecycle" in rows[3] and "drained" in rows[3]
    assert "1 admitted, 1 rejected" in lines[-1]


def test_node_detail_view_and_json() -> None:
    detail = pb.NodeDetail(node=_views()[1], findings_at=NOW - 30)
    detail.findings.add(
        check="xid", severity=pb.SEVERITY_CRITICAL, gpu=3, message="XID 79", action=5
    )
    detail.findings[0].evidence["xid"].integer = 79
    detail.history.add(from_state="ready", to_state="drained", cause="fatal_event", at=NOW - 60)
    detail.rails.add(device="mlx5_0", port=1, state="ACTIVE", rate_gbps=400)
    out = text_of(render.node_detail_view(detail, NOW))
    for text in ("XID 79 on GPU 3", "findings (30s old)", "reboot_node", "fatal_event", "1m"):
        assert text in out
    data = render.node_detail_json(detail)
    assert data["findings"][0]["evidence"] == {"xid": 79}
    assert data["rails"][0] == {
        "device": "mlx5_0",
        "port": 1,
        "state": "ACTIVE",
        "rate_gbps": 400.0,
        "gpu": None,
    }


def test_events_table() -> None:
    events = [pb.FleetEvent(id=1, node="", kind="run", message="started", at=NOW - 90)]
    out = text_of(render.events_table(events, NOW))
    assert "1m" in out and "started" in out and " - " in out


def test_progress_view_shows_both_bars() -> None:
    console = Console(
        record=True, width=120, force_terminal=True, color_system=None, file=io.StringIO()
    )
    with render.PreflightProgressView(console) as view:
        view.update(pb.PreflightProgress(total=10, done=2, retesting=4, phase="retest"))
        view.update(pb.PreflightProgress(total=10, done=7, retesting=1, phase="gate", node="n7"))
    out = console.export_text()
    assert "judged" in out and "7/10" in out and "gate (n7)" in out
    assert "re-tested" in out and "3/4" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:50051", ("127.0.0.1", 50051)),
        ("ctl.example:443", ("ctl.example", 443)),
        ("[::1]:9", ("::1", 9)),
    ],
)
def test_parse_target(text: str, expected: tuple[str, int]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize("text", ["", "host", ":80", "host:", "host:99999", "a:b:c:1", "::1:9"])
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="controller"):
        parse_target(text)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("10.0.0.1", False),
        ("ctl.example", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", NOW - 90),
        ("90s", NOW - 90),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1.5d", NOW - 129600),
        ("2023-11-14T22:13:20+00:00", 1_700_000_000.0),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5m"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_since(text, NOW)


@pytest.mark.parametrize(
    ("code", "exit_code", "fragment"),
    [
        (grpc.StatusCode.UNAVAILABLE, EXIT_UNREACHABLE, "cannot reach controller at h:1 (boom"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, EXIT_UNREACHABLE, "did not answer within 10s"),
        (grpc.StatusCode.NOT_FOUND, EXIT_REFUSED, "NOT_FOUND: boom"),
        (grpc.StatusCode.PERMISSION_DENIED, EXIT_REFUSED, "check --token-file"),
        (grpc.StatusCode.INTERNAL, EXIT_ERROR, "controller error INTERNAL: boom"),
    ],
)
def test_describe_rpc_error(code: grpc.StatusCode, exit_code: int, fragment: str) -> None:
    error = describe_rpc_error(code, "boom\n  second line", Connection(target="h:1"))
    assert error.code == exit_code
    assert fragment in str(error)
    assert "\n" not in str(error)


def test_one_line() -> None:
    assert one_line("a\n  b\tc ") == "a b c"
