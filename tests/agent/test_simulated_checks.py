"""The simulator drives the real checks: healthy nodes judge OK, each fault is caught on its GPU."""

from __future__ import annotations

import pytest

from agent.checks.evaluate import evaluate
from agent.collect import collect_node
from agent.gpu.simulated import SimulatedBackend, build_simulated_backend, parse_sim_spec
from agent.model import Finding, NodeSample, Severity, worst_severity
from agent.policy import load_policy
from gpufleet_common.clock import FakeClock


def _judge(spec: str, window_s: float = 60.0) -> list[Finding]:
    """Sweep at the start and after `window_s` (faults fire at +10 s in between), then judge."""
    clock = FakeClock()
    backend = build_simulated_backend(parse_sim_spec(spec), None, clock)

    def sweep(b: SimulatedBackend) -> NodeSample:
        return collect_node(b.name, b, clock, lambda _gpus: b.host_sample())

    first = sweep(backend)
    clock.advance(window_s)
    return [f for f in evaluate(sweep(backend), first, load_policy()) if f.severity.rank > 0]


@pytest.mark.parametrize(
    "spec", ["h100_sxm", "h100_sxm:load=1", "gb300", "gb300:load=0.95,seed=11", "h100_sxm:gpus=4"]
)
def test_healthy_simulated_nodes_judge_ok(spec: str) -> None:
    assert _judge(spec) == []


@pytest.mark.parametrize(
    ("spec", "severity", "gpu"),
    [
        ("h100_sxm:fault=ecc_dbe@gpu3+10s", Severity.CRITICAL, 3),
        ("gb300:fault=xid79@gpu1+10s", Severity.CRITICAL, 1),
        ("h100_sxm:load=0.8,fault=thermal_slowdown@gpu4+10s", Severity.CRITICAL, 4),
        ("h100_sxm:load=0.8,fault=nvlink_errors@gpu1+10s", Severity.CRITICAL, 1),
        ("gb300:load=0.8,fault=nvlink_errors@gpu2+10s", Severity.CRITICAL, 2),
        ("gb300:fault=fabric_incomplete@gpu1+10s;health=route_unhealthy", Severity.CRITICAL, 1),
        ("h100_sxm:fault=nvlink_down@gpu6+10s;link=9", Severity.CRITICAL, 6),
        ("h100_sxm:fault=recovery_action@gpu0+10s;action=node_reboot", Severity.CRITICAL, 0),
        ("h100_sxm:load=0.8,fault=pcie_replay@gpu5+10s;rate=1000", Severity.WARN, 5),
        ("h100_sxm:fault=ib_port_down@mlx5_3+10s", Severity.CRITICAL, None),
    ],
)
def test_each_fault_is_caught_on_its_gpu(spec: str, severity: Severity, gpu: int | None) -> None:
    findings = _judge(spec)
    assert worst_severity(f.severity for f in findings) is severity, findings
    assert {f.gpu for f in findings} == {gpu}, findings
