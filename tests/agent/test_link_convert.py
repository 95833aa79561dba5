"""Domain types <-> wire messages: typed evidence, enums, telemetry, bounds, round trips, and
validation of what the controller sends."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from agent.burnin.spec import BurnInResult, SizeResult
from agent.link import convert
from agent.link.convert import MAX_EVIDENCE, MAX_FINDINGS, MAX_GPUS, MAX_STRING_BYTES
from agent.link.directives import directive_from_proto
from agent.link.types import (
    CheckNow,
    DirectiveError,
    DirectiveResult,
    NodeIdentity,
    RankAssignment,
    RankExit,
    RunBurnIn,
    SetDrain,
    StartRanks,
    StopRanks,
)
from agent.model import (
    Action,
    EvidenceValue,
    Finding,
    GpuSample,
    IbPort,
    NodeReport,
    NodeSample,
    ReadStatus,
    Severity,
    SystemInfo,
    Unavailable,
    XidEvent,
)
from protos.gpufleet.v1 import fleet_pb2 as pb


def node_report(findings: tuple[Finding, ...], gpus: tuple[GpuSample, ...] = ()) -> NodeReport:
    sample = NodeSample(
        hostname="h1", timestamp=1700.5, monotonic=3.0, system=SystemInfo(), gpus=gpus
    )
    return NodeReport(sample=sample, findings=findings)


# ---------------------------------------------------------------- reports and findings


def test_report_carries_verdict_action_findings_and_telemetry() -> None:
    findings = (
        Finding("gpu.temp", Severity.WARN, "hot", gpu=1, evidence={"temp_c": 91.5}),
        Finding(
            "xid",
            Severity.CRITICAL,
            "fell off the bus",
            gpu=0,
            action=Action.RESET_GPU,
            evidence={"xid": 79, "source": "nvml", "recent": True, "extra": None},
        ),
        Finding("host.disk", Severity.OK, "fine"),
    )
    gpus = (
        GpuSample(index=0, unavailable={"power_w": Unavailable(ReadStatus.GPU_LOST)}),
        GpuSample(index=1, temperature_c=91.5, power_w=700.0, energy_mj=123, gpu_util_pct=99.0),
    )
    msg = convert.report_to_proto(
        node_report(findings, gpus), sweep_duration_s=0.25, window_s=5.0, directive_id="d1"
    )
    assert msg.sampled_at == 1700.5
    assert msg.verdict == pb.SEVERITY_CRITICAL and msg.action == pb.ACTION_RESET_GPU
    assert (msg.sweep_duration_s, msg.window_s, msg.directive_id) == (0.25, 5.0, "d1")
    xid = msg.findings[1]
    assert xid.gpu == 0 and xid.action == pb.ACTION_RESET_GPU
    assert xid.evidence["xid"].WhichOneof("kind") == "integer" and xid.evidence["xid"].integer == 79
    assert xid.evidence["source"].text == "nvml"
    assert xid.evidence["recent"].WhichOneof("kind") == "flag"  # a bool is not an integer
    assert xid.evidence["extra"].WhichOneof("kind") is None
    assert msg.findings[0].evidence["temp_c"].number == 91.5
    assert not msg.findings[2].HasField("gpu")  # node-level
    lost, hot = msg.gpus
    assert lost.lost and not lost.HasField("temperature_c")
    assert not hot.lost and hot.temperature_c == 91.5 and hot.energy_mj == 123
    assert not hot.HasField("sm_clock_mhz")


def test_integers_beyond_int64_are_kept_exactly_as_text() -> None:
    msg = convert.finding_to_proto(Finding("c", Severity.OK, "m", evidence={"big": 2**70}))
    assert msg.evidence["big"].text == str(2**70)


def test_reports_are_fitted_to_the_controllers_bounds() -> None:
    many = tuple(Finding(f"c{i}", Severity.OK, "fine") for i in range(MAX_FINDINGS + 40))
    criticals = tuple(Finding(f"bad{i}", Severity.CRITICAL, "x" * 10_000) for i in range(3))
    evidence: dict[str, EvidenceValue] = {f"k{i:02d}": i for i in range(MAX_EVIDENCE + 8)}
    big = Finding("ev", Severity.WARN, "m", evidence=evidence)
    gpus = tuple(GpuSample(index=i) for i in range(MAX_GPUS + 6))
    msg = convert.report_to_proto(node_report((*many, big, *criticals), gpus))
    assert len(msg.findings) == MAX_FINDINGS
    checks = [f.check for f in msg.findings]
    assert {"bad0", "bad1", "bad2", "ev"} <= set(checks)  # the most severe are kept
    assert checks == sorted(checks, key=[f.check for f in (*many, big, *criticals)].index)
    assert msg.verdict == pb.SEVERITY_CRITICAL
    bad = msg.findings[-1]
    assert len(bad.message.encode()) <= MAX_STRING_BYTES and bad.message.endswith("…")
    assert len(next(f for f in msg.findings if f.check == "ev").evidence) == MAX_EVIDENCE
    assert len(msg.gpus) == MAX_GPUS


def test_fit_cuts_on_a_character_boundary() -> None:
    text = "é" * 3000  # 2 bytes each
    cut = convert.fit(text, 101)
    assert len(cut.encode()) <= 101 and cut.endswith("…") and set(cut[:-1]) == {"é"}
    assert convert.fit("short") == "short"


evidence_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=50),
)
findings = st.builds(
    Finding,
    check=st.text(min_size=1, max_size=30),
    severity=st.sampled_from(Severity),
    message=st.text(max_size=100),
    gpu=st.none() | st.integers(min_value=0, max_value=63),
    action=st.sampled_from(Action),
    evidence=st.dictionaries(st.text(max_size=20), evidence_values, max_size=MAX_EVIDENCE),
)


@given(finding=findings)
def test_findings_round_trip(finding: Finding) -> None:
    wire = pb.Finding.FromString(convert.finding_to_proto(finding).SerializeToString())
    back = convert.finding_from_proto(wire)
    assert back == finding
    assert all(type(back.evidence[k]) is type(v) for k, v in finding.evidence.items())


@given(
    event=st.builds(
        XidEvent,
        xid=st.integers(min_value=1, max_value=200),
        timestamp=st.floats(min_value=0, max_value=2e9),
        gpu=st.none() | st.integers(min_value=0, max_value=7),
        pci_bus_id=st.none() | st.just("00000000:1B:00.0"),
        source=st.sampled_from(["nvml", "kmsg", "simulated"]),
        message=st.text(max_size=80),
    ),
    severity=st.sampled_from(Severity),
    action=st.sampled_from(Action),
)
def test_xids_round_trip(event: XidEvent, severity: Severity, action: Action) -> None:
    wire = pb.XidEvent.FromString(convert.xid_to_proto(event, severity, action).SerializeToString())
    assert convert.xid_from_proto(wire) == (event, severity, action)


def test_unknown_enum_values_are_refused_when_reading_back() -> None:
    with pytest.raises(ValueError, match="severity"):
        convert.severity_from_proto(pb.SEVERITY_UNSPECIFIED)
    with pytest.raises(ValueError, match="action"):
        convert.action_from_proto(99)


# ---------------------------------------------------------------- hello and other messages


def test_hello_describes_the_node() -> None:
    identity = NodeIdentity(
        node="gb300-r07-n3",
        hostname="gb300-r07-n3.cluster",
        agent_version="0.1.0",
        sku="gb300",
        driver_version="580.65",
        cuda_driver_version="13.0",
        gpus=(
            GpuSample(index=0, uuid="GPU-a", name="NVIDIA GB300", serial="s0", pci_bus_id="b0"),
            GpuSample(index=1, uuid="GPU-b"),
        ),
        nvlink_domain="cluster-uuid:3",
        rack="r07",
        ib_ports=(
            IbPort("mlx5_0", 1, "ACTIVE", "LinkUp", 400.0, "InfiniBand"),
            IbPort("mlx5_1", 1, "DOWN", "Polling", None, "InfiniBand"),
            IbPort("mlx5_2", 1, "ACTIVE", "LinkUp", 400.0, "InfiniBand"),
        ),
        rails={0: "mlx5_0/1", 1: "mlx5_1/1"},
    )
    hello = convert.hello_to_proto(identity, next_seq=42, boot_id="boot-1")
    assert (hello.node, hello.sku, hello.rack, hello.next_seq) == (
        "gb300-r07-n3",
        "gb300",
        "r07",
        42,
    )
    assert (hello.driver_version, hello.cuda_driver_version) == ("580.65", "13.0")
    assert hello.nvlink_domain == "cluster-uuid:3" and hello.boot_id == "boot-1"
    assert [(g.index, g.uuid, g.name) for g in hello.gpus] == [
        (0, "GPU-a", "NVIDIA GB300"),
        (1, "GPU-b", ""),
    ]
    assert [(r.device, r.state, r.rate_gbps) for r in hello.rails] == [
        ("mlx5_0", "ACTIVE", 400.0),
        ("mlx5_1", "DOWN", 0.0),
        ("mlx5_2", "ACTIVE", 400.0),
    ]
    assert [r.gpu if r.HasField("gpu") else None for r in hello.rails] == [0, 1, None]


def test_a_node_without_a_fabric_is_its_own_nvlink_domain() -> None:
    hello = convert.hello_to_proto(NodeIdentity(node="n1", hostname="h"), next_seq=1, boot_id="b")
    assert hello.nvlink_domain == "n1"


@pytest.mark.parametrize("name", ["", "-lead", "has space", "a" * 64, "ünïcode", "a/b"])
def test_node_names_the_controller_refuses_are_a_clear_error(name: str) -> None:
    with pytest.raises(ValueError, match="node name"):
        convert.hello_to_proto(NodeIdentity(node=name, hostname="h"), next_seq=1, boot_id="b")


def test_rank_exit_keeps_the_end_of_a_long_stderr() -> None:
    tail = "noise\n" * 5000 + "RuntimeError: NCCL timeout"
    msg = convert.rank_exit_to_proto(
        RankExit(run_id="r", attempt=1, rank=3, exit_code=-9, at=5.0, stderr_tail=tail)
    )
    assert msg.stderr_tail.endswith("RuntimeError: NCCL timeout")
    assert len(msg.stderr_tail.encode()) <= convert.MAX_STDERR_BYTES
    assert (msg.rank, msg.exit_code, msg.reason) == (3, -9, "exited")


class _Tick:
    run_id = "run"
    attempt = 0
    rank = 2
    step = 10
    loss: float | None = None
    step_time_s = 0.5
    tokens = 4096
    ts = 123.0


def test_progress_without_a_loss_is_sent_as_nan() -> None:
    msg = convert.progress_to_proto(_Tick())
    assert math.isnan(msg.loss) and (msg.step, msg.tokens, msg.at) == (10, 4096, 123.0)


def test_directive_result_with_burnin_measurements() -> None:
    burnin = BurnInResult(
        backend="gloo",
        world_size=4,
        sizes=(SizeResult(bytes=1 << 20, time_us=5000.0, algbw_gbps=0.2, busbw_gbps=0.3, wrong=0),),
        duration_s=2.0,
    )
    msg = convert.result_to_proto(
        DirectiveResult("d9", ok=True, message="done", burnin=burnin, burnin_id="b1")
    )
    assert (msg.directive_id, msg.ok, msg.burnin.burnin_id) == ("d9", True, "b1")
    assert msg.burnin.sizes[0].busbw_gbps == 0.3 and msg.burnin.world_size == 4
    plain = convert.result_to_proto(DirectiveResult("d10", ok=False, message="no"))
    assert plain.WhichOneof("payload") is None


# ---------------------------------------------------------------- directives from the controller


def test_every_directive_kind_is_understood() -> None:
    cases: list[tuple[pb.Directive, object]] = [
        (pb.Directive(id="a", check_now=pb.CheckNow(window_s=5)), CheckNow(5.0)),
        (pb.Directive(id="b", set_drain=pb.SetDrain(drained=True, reason="xid 79")),
         SetDrain(True, "xid 79")),
        (pb.Directive(id="c", stop_ranks=pb.StopRanks(run_id="r", attempt=2, grace_s=10)),
         StopRanks("r", 2, 10.0)),
    ]  # fmt: skip
    for msg, kind in cases:
        directive = directive_from_proto(msg)
        assert directive.kind == kind and directive.id == msg.id
    burnin = directive_from_proto(
        pb.Directive(
            id="d",
            issued_at=9.0,
            run_burnin=pb.RunBurnIn(
                burnin_id="b", sizes_bytes=[1024], iters=5, world_size=8, rank_offset=4,
                local_ranks=4, master_addr="10.0.0.1", master_port=29500, timeout_s=60,
                options={"throttle": "1"},
            ),
        )
    )  # fmt: skip
    assert isinstance(burnin.kind, RunBurnIn) and burnin.issued_at == 9.0
    assert burnin.kind.sizes_bytes == (1024,) and burnin.kind.options == {"throttle": "1"}
    start = directive_from_proto(
        pb.Directive(
            id="e",
            start_ranks=pb.StartRanks(
                run_id="r", attempt=1, argv=["python", "train.py"], env={"A": "1"},
                master_addr="m", master_port=1234, world_size=4, workdir="/w",
                ranks=[pb.RankAssignment(rank=2, local_rank=0, gpu=0, rail="mlx5_0/1"),
                       pb.RankAssignment(rank=3, local_rank=1, gpu=1)],
            ),
        )
    )  # fmt: skip
    assert isinstance(start.kind, StartRanks)
    assert start.kind.ranks == (RankAssignment(2, 0, 0, "mlx5_0/1"), RankAssignment(3, 1, 1))
    assert start.kind.argv == ("python", "train.py") and start.kind.env == {"A": "1"}


def _unknown_kind() -> pb.Directive:
    # A newer controller's kind (field 15, length-delimited): parsed as an unknown field.
    raw = pb.Directive(id="u").SerializeToString() + bytes([(15 << 3) | 2, 1, 0])
    parsed = pb.Directive.FromString(raw)
    assert parsed.WhichOneof("kind") is None
    return parsed


def _burnin(**over: object) -> pb.Directive:
    fields: dict[str, object] = dict(
        burnin_id="b", world_size=2, local_ranks=2, rank_offset=0, timeout_s=10, iters=1
    )
    fields.update(over)
    return pb.Directive(id="x", run_burnin=pb.RunBurnIn(**fields))  # type: ignore[arg-type]


def _start(*ranks: tuple[int, int, int], world: int = 4) -> pb.Directive:
    assignments = [pb.RankAssignment(rank=r, local_rank=lr, gpu=g) for r, lr, g in ranks]
    return pb.Directive(
        id="x",
        start_ranks=pb.StartRanks(run_id="r", argv=["p"], world_size=world, ranks=assignments),
    )


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (pb.Directive(check_now=pb.CheckNow()), "directive id is empty"),
        (pb.Directive(id="x"), "no directive kind"),
        (_unknown_kind(), "no directive kind"),
        (pb.Directive(id="x", issued_at=math.nan, check_now=pb.CheckNow()), "issued_at"),
        (pb.Directive(id="x", check_now=pb.CheckNow(window_s=-1)), "window_s"),
        (pb.Directive(id="x", check_now=pb.CheckNow(window_s=math.inf)), "window_s"),
        (_burnin(rank_offset=1), "exceed world"),
        (_burnin(world_size=0), "world_size"),
        (_burnin(timeout_s=0), "timeout_s"),
        (_burnin(backend="mpi"), "backend"),
        (_burnin(sizes_bytes=[0]), "sizes"),
        (_burnin(master_port=70000), "master_port"),
        (_burnin(burnin_id=""), "burnin_id"),
        (_start((0, 0, 0), (0, 1, 1)), "rank is assigned twice"),
        (_start((0, 0, 0), (1, 0, 1)), "local rank is assigned twice"),
        (_start((4, 0, 0)), "rank must be"),
        (_start(), "no ranks"),
        (pb.Directive(id="x", stop_ranks=pb.StopRanks(grace_s=1)), "run_id"),
        (pb.Directive(id="x", stop_ranks=pb.StopRanks(run_id="r", grace_s=-1)), "grace_s"),
    ],
)
def test_bad_directives_are_refused_with_a_reason(msg: pb.Directive, reason: str) -> None:
    with pytest.raises(DirectiveError, match=reason) as info:
        directive_from_proto(msg)
    assert info.value.directive_id == msg.id[:256]
