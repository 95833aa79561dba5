"""The `gpufleet` CLI end to end over real gRPC, against an in-test fake FleetAdmin.

The fake keeps nodes and evidence in memory and answers with the real pure logic (lifecycle
transitions for drain/undrain, the real gate for preflight), so these tests exercise the CLI's
flags, wire calls, JSON shapes, exit codes and one-line errors, not a mock's echo.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner, Result

from controller.fleet.gate import gate
from controller.fleet.lifecycle import IllegalTransition, NodeEvent, NodeState, transition
from controller.fleet.model import (
    Evidence,
    EvidenceKind,
    GateFinding,
    GatePolicy,
    NodeFacts,
    Severity as Sev,
)
from controller.fleet.wire import verdict_to_wire
from controller.operator_cli import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_REJECTED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    get_app,
    main,
)
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc

NOW = time.time()
_add_servicer: Callable[[pb_grpc.FleetAdminServicer, grpc.Server], None] = (
    pb_grpc.add_FleetAdminServicer_to_server
)


@dataclass
class FakeFleet:
    """In-memory fleet state the fake servicer reads and changes."""

    nodes: dict[str, pb.NodeView] = field(default_factory=dict)
    evidence: dict[str, list[Evidence]] = field(default_factory=dict)
    events: list[pb.FleetEvent] = field(default_factory=list)
    token: str = ""
    send_result: bool = True
    requests: list[object] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)


class FakeFleetAdmin(pb_grpc.FleetAdminServicer):
    """A small FleetAdmin with the real lifecycle and gate behind it."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet

    def _enter(self, request: object, context: grpc.ServicerContext) -> None:
        self.fleet.requests.append(request)
        md = {k: str(v) for k, v in context.invocation_metadata()}
        self.fleet.metadata.append(md)
        if self.fleet.token and md.get("authorization") != f"Bearer {self.fleet.token}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong operator token")

    def _node(self, name: str, context: grpc.ServicerContext) -> pb.NodeView:
        if name not in self.fleet.nodes:
            context.abort(grpc.StatusCode.NOT_FOUND, f"node {name!r} is not known")
        return self.fleet.nodes[name]

    def ListNodes(
        self, request: pb.ListNodesRequest, context: grpc.ServicerContext
    ) -> pb.ListNodesResponse:
        self._enter(request, context)
        views = [
            v
            for _, v in sorted(self.fleet.nodes.items())
            if request.state in ("", v.state)
            and request.sku in ("", v.sku)
            and request.nvlink_domain in ("", v.nvlink_domain)
        ]
        return pb.ListNodesResponse(nodes=views)

    def GetNode(self, request: pb.GetNodeRequest, context: grpc.ServicerContext) -> pb.NodeDetail:
        self._enter(request, context)
        view = self._node(request.name, context)
        detail = pb.NodeDetail(node=view, findings_at=NOW - 30)
        detail.findings.add(
            check="xid",
            severity=pb.SEVERITY_CRITICAL,
            gpu=3,
            message="XID 79",
            action=pb.ACTION_REBOOT_NODE,
        )
        detail.findings.add(check="pcie", severity=pb.SEVERITY_WARN, message="link degraded")
        detail.history.add(
            node=view.name,
            from_state="ready",
            to_state="drained",
            cause="fatal_event",
            evidence_id="r-9",
            at=NOW - 60,
            actor="controller",
        )
        detail.gpus.add(index=0, uuid="GPU-0", name="H100", vbios_version="96.1")
        return detail

    def _apply(
        self, request: pb.DrainRequest, event: NodeEvent, context: grpc.ServicerContext
    ) -> pb.NodeView:
        self._enter(request, context)
        view = self._node(request.node, context)
        try:
            view.state = transition(NodeState(view.state), event)
        except IllegalTransition as exc:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        view.state_reason = request.reason
        return view

    def Drain(self, request: pb.DrainRequest, context: grpc.ServicerContext) -> pb.NodeView:
        return self._apply(request, NodeEvent.OPERATOR_DRAIN, context)

    def Undrain(self, request: pb.DrainRequest, context: grpc.ServicerContext) -> pb.NodeView:
        return self._apply(request, NodeEvent.OPERATOR_UNDRAIN, context)

    def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.ServicerContext
    ) -> pb.ListEventsResponse:
        self._enter(request, context)
        chosen = [
            e
            for e in sorted(self.fleet.events, key=lambda e: -e.at)
            if request.node in ("", e.node) and e.at >= request.since
        ]
        return pb.ListEventsResponse(events=chosen[: request.limit or 100])

    def Preflight(
        self, request: pb.PreflightRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.PreflightUpdate]:
        self._enter(request, context)
        names = sorted(self.fleet.nodes) if request.all else list(request.nodes)
        for name in names:
            self._node(name, context)
        policy = GatePolicy().with_burnin() if request.burnin else GatePolicy()
        result = pb.PreflightResult(run=request.run)
        for done, name in enumerate(names, start=1):
            view = self.fleet.nodes[name]
            facts = NodeFacts(name, NodeState(view.state), view.state_reason)
            verdict = gate(facts, self.fleet.evidence.get(name, []), policy, NOW, run=request.run)
            result.verdicts.append(verdict_to_wire(verdict, with_notes=True))
            progress = pb.PreflightProgress(total=len(names), done=done, phase="gate", node=name)
            yield pb.PreflightUpdate(progress=progress)
        if self.fleet.send_result:
            yield pb.PreflightUpdate(result=result)


def _view(name: str, state: str, sku: str = "h100_sxm", domain: str = "d0") -> pb.NodeView:
    return pb.NodeView(
        name=name,
        state=state,
        verdict="ok",
        sku=sku,
        gpus=8,
        nvlink_domain=domain,
        rack="r1",
        connected=True,
        last_seen=NOW - 2,
        hostname=name,
    )


def _fleet() -> FakeFleet:
    xid = GateFinding("xid", Sev.CRITICAL, 3, "XID 79: fell off the bus", "reboot_node")
    hot = GateFinding("thermal", Sev.WARN, 1, "GPU 1 at 86 C")
    health = EvidenceKind.HEALTH
    return FakeFleet(
        nodes={
            "n1": _view("n1", "ready"),
            "n2": _view("n2", "ready"),
            "n3": _view("n3", "drained", domain="d1"),
            "g1": _view("g1", "registered", sku="gb300", domain="nvl72-a"),
        },
        evidence={
            "n1": [Evidence("h-1", health, Sev.OK, (), NOW - 10)],
            "n2": [Evidence("h-2", health, Sev.CRITICAL, (xid,), NOW - 42)],
            "g1": [Evidence("h-3", health, Sev.WARN, (hot,), NOW - 5)],
        },
        events=[
            pb.FleetEvent(id=1, node="n2", kind="xid", message="XID 79", at=NOW - 3600),
            pb.FleetEvent(id=2, node="n3", kind="drain", message="operator", at=NOW - 120),
            pb.FleetEvent(
                id=3, node="n2", kind="transition", message="ready->suspect", at=NOW - 30
            ),
        ],
    )


@pytest.fixture
def fleet() -> FakeFleet:
    return _fleet()


@pytest.fixture
def controller(fleet: FakeFleet) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    _add_servicer(FakeFleetAdmin(fleet), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(5)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "CONTROLLER",
        "INSECURE",
        "TLS_CA",
        "TLS_CERT",
        "TLS_KEY",
        "TOKEN_FILE",
        "TIMEOUT",
    ):
        monkeypatch.delenv(f"GPUFLEET_{name}", raising=False)


def cli(target: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(get_app(), ["--controller", target, *args], env=env)


def one_error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gpufleet: ")
    return lines[0]


# ---------------------------------------------------------------- nodes


def test_nodes_json_has_the_contract_shape(controller: str) -> None:
    result = cli(controller, "nodes", "--json")
    assert result.exit_code == EXIT_OK, result.output
    nodes = json.loads(result.stdout)
    assert [n["name"] for n in nodes] == ["g1", "n1", "n2", "n3"]
    for n in nodes:
        assert {"name", "state", "verdict", "sku", "gpus", "nvlink_domain"} <= n.keys()
    assert nodes[0] == {
        "name": "g1",
        "state": "registered",
        "verdict": "ok",
        "sku": "gb300",
        "gpus": 8,
        "nvlink_domain": "nvl72-a",
        "rack": "r1",
        "connected": True,
        "last_seen": pytest.approx(NOW - 2),
        "state_reason": "",
        "driver_version": "",
        "hostname": "g1",
    }


@pytest.mark.parametrize(
    ("flags", "expected", "request_fields"),
    [
        (["--state", "drained"], ["n3"], ("drained", "", "")),
        (["--state", "READY"], ["n1", "n2"], ("ready", "", "")),
        (["--sku", "gb300"], ["g1"], ("", "gb300", "")),
        (["--domain", "d0"], ["n1", "n2"], ("", "", "d0")),
        (["--sku", "h100_sxm", "--domain", "d1"], ["n3"], ("", "h100_sxm", "d1")),
    ],
)
def test_nodes_filters_reach_the_controller(
    controller: str,
    fleet: FakeFleet,
    flags: list[str],
    expected: list[str],
    request_fields: tuple[str, str, str],
) -> None:
    result = cli(controller, "nodes", *flags, "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert [n["name"] for n in json.loads(result.stdout)] == expected
    (request,) = fleet.requests
    assert isinstance(request, pb.ListNodesRequest)
    assert (request.state, request.sku, request.nvlink_domain) == request_fields


def test_nodes_table_for_humans(controller: str) -> None:
    result = cli(controller, "nodes")
    assert result.exit_code == EXIT_OK
    for text in ("NAME", "STATE", "n1", "drained", "gb300", "4 nodes"):
        assert text in result.stdout


def test_unknown_state_is_a_usage_error(controller: str, fleet: FakeFleet) -> None:
    result = cli(controller, "nodes", "--state", "sleepy")
    assert result.exit_code == EXIT_USAGE
    assert fleet.requests == []


def test_controller_from_environment(controller: str) -> None:
    result = CliRunner().invoke(
        get_app(), ["nodes", "--json"], env={"GPUFLEET_CONTROLLER": controller}
    )
    assert result.exit_code == EXIT_OK, result.output
    assert len(json.loads(result.stdout)) == 4


# ---------------------------------------------------------------- node show


def test_node_show_json(controller: str, fleet: FakeFleet) -> None:
    result = cli(controller, "node", "show", "n3", "--history", "5", "--json")
    assert result.exit_code == EXIT_OK, result.output
    detail = json.loads(result.stdout)
    assert (detail["name"], detail["state"]) == ("n3", "drained")
    assert detail["findings"][0] == {
        "check": "xid",
        "severity": "critical",
        "gpu": 3,
        "message": "XID 79",
        "action": "reboot_node",
        "evidence": {},
    }
    assert detail["findings"][1]["gpu"] is None
    assert detail["history"][0]["to_state"] == "drained"
    assert detail["history"][0]["evidence_id"] == "r-9"
    request = fleet.requests[0]
    assert isinstance(request, pb.GetNodeRequest)
    assert (request.name, request.history_limit) == ("n3", 5)


def test_node_show_table(controller: str) -> None:
    result = cli(controller, "node", "show", "n3")
    assert result.exit_code == EXIT_OK
    for text in ("findings", "XID 79", "history", "fatal_event", "drained"):
        assert text in result.stdout


def test_unknown_node_is_one_line_not_found(controller: str) -> None:
    result = cli(controller, "node", "show", "nope")
    assert result.exit_code == EXIT_REFUSED
    line = one_error_line(result)
    assert "NOT_FOUND" in line and "nope" in line
    assert result.stdout == ""


# ---------------------------------------------------------------- drain / undrain


def test_drain_then_undrain(controller: str, fleet: FakeFleet) -> None:
    drained = cli(controller, "drain", "n1", "--reason", "fan noise", "--json")
    assert drained.exit_code == EXIT_OK, drained.output
    assert json.loads(drained.stdout)["state"] == "drained"
    assert fleet.nodes["n1"].state_reason == "fan noise"

    listed = cli(controller, "nodes", "--state", "drained", "--json")
    assert [n["name"] for n in json.loads(listed.stdout)] == ["n1", "n3"]

    undrained = cli(controller, "undrain", "n1")
    assert undrained.exit_code == EXIT_OK, undrained.output
    assert undrained.stdout.strip() == "n1: registered"
    assert fleet.nodes["n1"].state == "registered"


def test_undrain_of_a_ready_node_is_refused(controller: str) -> None:
    result = cli(controller, "undrain", "n1", "--json")
    assert result.exit_code == EXIT_REFUSED
    line = one_error_line(result)
    assert "FAILED_PRECONDITION" in line and "operator_undrain is not allowed" in line


@pytest.mark.parametrize("args", [["drain", "n1"], ["drain", "n1", "--reason", "  "]])
def test_drain_needs_a_reason(controller: str, fleet: FakeFleet, args: list[str]) -> None:
    result = cli(controller, *args)
    assert result.exit_code == EXIT_USAGE
    assert fleet.nodes["n1"].state == "ready"


# ---------------------------------------------------------------- preflight


def test_preflight_json_shape_and_exit_code(controller: str, fleet: FakeFleet) -> None:
    result = cli(controller, "preflight", "n1", "n2", "n3", "--run", "dsv3", "--json")
    assert result.exit_code == EXIT_REJECTED
    body = json.loads(result.stdout)
    assert body["admitted"] == ["n1"]
    assert body["run"] == "dsv3"
    rejected = {r["node"]: r["reasons"] for r in body["rejected"]}
    assert set(rejected) == {"n2", "n3"}
    (xid,) = rejected["n2"]
    assert xid == {
        "check": "xid",
        "severity": "critical",
        "gpu": 3,
        "message": "XID 79: fell off the bus",
        "evidence_age_s": pytest.approx(42, abs=2),
        "evidence_id": "h-2",
    }
    assert rejected["n3"][0]["check"] == "lifecycle"
    assert rejected["n3"][0]["gpu"] is None
    assert one_error_line(result) == "gpufleet: 2 of 3 nodes rejected: n2, n3"


def test_preflight_all_admitted_exits_zero(controller: str, fleet: FakeFleet) -> None:
    result = cli(controller, "preflight", "n1", "g1", "--json")
    assert result.exit_code == EXIT_OK, result.output
    body = json.loads(result.stdout)
    assert (body["admitted"], body["rejected"]) == (["n1", "g1"], [])
    (notes,) = body["notes"]
    assert notes["node"] == "g1"
    assert [(n["check"], n["severity"], n["gpu"]) for n in notes["notes"]] == [
        ("thermal", "warn", 1)
    ]
    assert result.stderr == ""


def test_preflight_forwards_its_options(controller: str, fleet: FakeFleet) -> None:
    result = cli(
        controller,
        "preflight",
        "--all",
        "--burnin",
        "--run",
        "r",
        "--max-age",
        "60",
        "--wait",
        "30",
        "--json",
    )
    assert result.exit_code == EXIT_REJECTED  # nobody has burn-in evidence
    request = fleet.requests[0]
    assert isinstance(request, pb.PreflightRequest)
    assert (request.all, request.burnin, request.run) == (True, True, "r")
    assert (request.max_age_s, request.timeout_s) == (60.0, 30.0)
    body = json.loads(result.stdout)
    assert body["admitted"] == []
    assert len(body["rejected"]) == 4


def test_preflight_table(controller: str) -> None:
    result = cli(controller, "preflight", "n1", "n2")
    assert result.exit_code == EXIT_REJECTED
    for text in ("admitted", "rejected", "xid", "critical", "XID 79", "1 admitted, 1 rejected"):
        assert text in result.stdout


@pytest.mark.parametrize("args", [[], ["--all", "n1"]])
def test_preflight_needs_nodes_or_all(controller: str, fleet: FakeFleet, args: list[str]) -> None:
    result = cli(controller, "preflight", *args)
    assert result.exit_code == EXIT_USAGE
    assert "--all" in one_error_line(result)
    assert fleet.requests == []


def test_preflight_of_unknown_node(controller: str) -> None:
    result = cli(controller, "preflight", "n1", "ghost", "--json")
    assert result.exit_code == EXIT_REFUSED
    assert "ghost" in one_error_line(result)
    assert result.stdout == ""


def test_preflight_stream_without_result(controller: str, fleet: FakeFleet) -> None:
    fleet.send_result = False
    result = cli(controller, "preflight", "n1", "--json")
    assert result.exit_code == EXIT_ERROR
    assert "without a result" in one_error_line(result)


# ---------------------------------------------------------------- events


def test_events_json_newest_first(controller: str) -> None:
    result = cli(controller, "events", "--json")
    assert result.exit_code == EXIT_OK, result.output
    events = json.loads(result.stdout)
    assert [e["id"] for e in events] == [3, 2, 1]
    assert {"id", "node", "kind", "message", "at", "detail"} <= events[0].keys()


def test_events_filters(controller: str, fleet: FakeFleet) -> None:
    result = cli(controller, "events", "--node", "n2", "--since", "10m", "--limit", "5", "--json")
    assert result.exit_code == EXIT_OK, result.output
    assert [e["id"] for e in json.loads(result.stdout)] == [3]
    request = fleet.requests[0]
    assert isinstance(request, pb.ListEventsRequest)
    assert (request.node, request.limit) == ("n2", 5)
    assert request.since == pytest.approx(time.time() - 600, abs=30)


def test_events_table(controller: str) -> None:
    result = cli(controller, "events")
    assert result.exit_code == EXIT_OK
    assert "ready->suspect" in result.stdout


def test_events_bad_since(controller: str, fleet: FakeFleet) -> None:
    result = cli(controller, "events", "--since", "yesterday-ish")
    assert result.exit_code == EXIT_USAGE
    assert "--since" in one_error_line(result)
    assert fleet.requests == []


# ---------------------------------------------------------------- connection failures


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [
        ["nodes", "--json"],
        ["node", "show", "n1"],
        ["drain", "n1", "--reason", "x"],
        ["undrain", "n1"],
        ["events"],
        ["preflight", "--all", "--json"],
    ],
)
def test_unreachable_controller_is_one_line(args: list[str]) -> None:
    target = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    result = cli(target, "--timeout", "5", *args)
    assert time.monotonic() - started < 10
    assert result.exit_code == EXIT_UNREACHABLE
    assert one_error_line(result).startswith(f"gpufleet: cannot reach controller at {target} (")
    assert result.stdout == ""


def test_token_is_sent_and_required(controller: str, fleet: FakeFleet, tmp_path: Path) -> None:
    fleet.token = "s3cret"
    denied = cli(controller, "nodes", "--json")
    assert denied.exit_code == EXIT_REFUSED
    assert "UNAUTHENTICATED" in one_error_line(denied)

    token = tmp_path / "token"
    token.write_text("s3cret\n")
    allowed = CliRunner().invoke(
        get_app(),
        ["--controller", controller, "nodes", "--json"],
        env={"GPUFLEET_TOKEN_FILE": str(token)},
    )
    assert allowed.exit_code == EXIT_OK, allowed.output
    assert fleet.metadata[-1]["authorization"] == "Bearer s3cret"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--controller", "10.0.0.5:50051"], "is not loopback"),
        (["--controller", "nope"], "is not HOST:PORT"),
        (["--controller", "127.0.0.1:0"], "out of range"),
        (["--insecure", "--tls-ca", "ca.pem"], "--insecure conflicts"),
        (["--tls-cert", "c.pem"], "--tls-cert and --tls-key go together"),
        (["--tls-ca", "missing-ca.pem"], "cannot read --tls-ca"),
        (["--token-file", "missing-token"], "cannot read --token-file"),
    ],
)
def test_bad_connection_settings(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the named files do not exist here
    result = CliRunner().invoke(get_app(), [*args, "nodes"])
    assert result.exit_code == EXIT_USAGE
    assert message in one_error_line(result)


def test_main_reports_usage_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nodes", "--bogus"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("gpufleet: ") and "--bogus" in err[0]


def test_main_returns_command_exit_codes(
    controller: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--controller", controller, "preflight", "n1", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["admitted"] == ["n1"]
    assert main(["--controller", controller, "preflight", "n2", "--json"]) == EXIT_REJECTED
