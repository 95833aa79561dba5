"""THE burn-in tests, end to end on loopback: the real controller (grpc.aio, SQLite) with the
burn-in extension, five simulated GB300 agents as their own processes (`python -m agent run
--simulate`), and real torch.distributed gloo ranks that the agents start on RunBurnIn.

- a 2-node x 2-rank multi-node burn-in through controller directives stores busbw per size;
- five single-node burn-ins (2 ranks each) where one node runs with `slowdown=4`: it is an
  outlier, `gpufleet preflight --burnin` rejects it with the burn-in reason and evidence age,
  and admits its peers;
- a hung worker (`hang=1`) is killed at its timeout and stored as CRITICAL evidence;
- a node whose evidence is no longer trusted (drained and back) is re-tested by
  `gpufleet preflight --burnin` through the same orchestration: its agent runs a real burn-in
  and the gate admits it on the stored, judged verdict.

Measuring the CPU simulation: the five "nodes" share two CPU cores (and the machine), unlike a
real fleet's nodes, which share nothing. Run at once they steal each other's cycles and healthy
nodes differ up to 7x, so the outlier test runs them one at a time (`--max-parallel 1`; that a
pass sends every directive before the first answer is tested in test_burnin_orchestrator.py,
and the multi-node test runs its two single-node burn-ins at once). Even then healthy gloo
nodes differ by up to ~1.5x, far more than NVLink does, so this controller judges its simulated
cohort with a relative floor (below half the cohort median is an outlier: `SIM_TARGETS`) rather
than the default 4·MAD, which has its own tests (test_burnin_judge.py, test_burnin_outcome.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil
import pytest
from typer.testing import CliRunner, Result

from controller.burnin.judge import BurnInTarget
from controller.burnin.params import BurninDefaults
from controller.operator_cli import EXIT_REJECTED, get_app
from controller.server import (
    AdminExtensions,
    Controller,
    ControllerSettings,
    PreflightSettings,
    ServiceSettings,
)
from controller.server.burnin_admin import BurninServicer
from controller.store import FleetStore
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc as pb_grpc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
T = TypeVar("T")
SPEC = "gb300:nodes=5,domain_size=2"
NODES = ("gb300-d0-t00", "gb300-d0-t01", "gb300-d1-t00", "gb300-d1-t01", "gb300-d2-t00")
SLOW = "gb300-d1-t00"
M = 1 << 20
SIM_TARGETS = {"default": BurnInTarget(min_busbw_gbps=0.0, k_mad=0.0,
                                       min_fraction_of_median=0.5, min_cohort=4)}


class LoopThread:
    """An asyncio loop on its own thread: the aio controller runs beside sync clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class SimFleet:
    """The running controller and its agents."""

    address: str
    db: Path
    agents: dict[str, subprocess.Popen[bytes]]
    controller: Controller
    loop: LoopThread

    def connected(self) -> set[str]:
        service = self.controller.service
        assert service is not None
        return {n for n in NODES if service.connected(n)}

    def read(self, node: str, kind: str = "burnin") -> Any:
        store = FleetStore.open(self.db, readonly=True)
        try:
            return store.latest_evidence(node, kind)
        finally:
            store.close()

    def burnin(self, **request: Any) -> fleet_pb2.BurninReport:
        with grpc.insecure_channel(self.address) as channel:
            admin: Any = pb_grpc.FleetAdminStub(channel)  # type: ignore[no-untyped-call]
            for update in admin.Burnin(fleet_pb2.BurninRequest(**request), timeout=180):
                if update.WhichOneof("body") == "result":
                    report: fleet_pb2.BurninReport = update.result
                    return report
        raise AssertionError("the Burnin stream ended without a report")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_agent(address: str, node: str, state_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    log = open(state_dir.parent / f"{node}.log", "wb")  # noqa: SIM115 - the process owns it
    return subprocess.Popen(
        [sys.executable, "-m", "agent", "run", "--controller", address, "--insecure",
         "--simulate", SPEC, "--node", node, "--metrics-listen", "127.0.0.1:0",
         "--interval", "5", "--state-dir", str(state_dir)],
        stdout=log, stderr=subprocess.STDOUT, env=env)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    tmp = tmp_path_factory.mktemp("burnin")
    loop = LoopThread()
    cfg = ControllerSettings(listen="127.0.0.1:0", db=tmp / "fleet.db",
                             service=ServiceSettings(heartbeat_check_s=0.0),
                             preflight=PreflightSettings(burnin_sizes=(M, 4 * M),
                                                         burnin_timeout_s=90.0,
                                                         burnin_targets=SIM_TARGETS))
    controller = Controller(cfg, extend=lambda service: AdminExtensions(burnin=BurninServicer(
        service, cfg.preflight, defaults=BurninDefaults(answer_grace_s=15.0))))
    loop.run(controller.start())
    agents: dict[str, subprocess.Popen[bytes]] = {}
    sim = SimFleet(controller.address, tmp / "fleet.db", agents, controller, loop)
    try:
        for node in NODES:
            agents[node] = start_agent(controller.address, node, tmp / node)
        deadline = time.monotonic() + 60
        while sim.connected() != set(NODES) or any(sim.read(n, "health") is None for n in NODES):
            assert time.monotonic() < deadline, f"agents not up: {sorted(sim.connected())}"
            assert all(p.poll() is None for p in agents.values()), "an agent exited"
            time.sleep(0.2)
        yield sim
    finally:
        for proc in agents.values():
            stop(proc)
        loop.run(controller.stop(grace_s=0))
        loop.close()


def cli(address: str, *args: str) -> Result:
    return CliRunner().invoke(get_app(), ["--controller", address, *args])


def test_two_nodes_burn_in_together_through_directives_and_store_busbw_per_size(
    fleet: SimFleet,
) -> None:
    pair = list(NODES[:2])  # gb300-d0-*: one NVLink domain
    report = fleet.burnin(nodes=pair, multi_node=True, ranks_per_node=2, sizes="1M,4M", iters=5,
                          warmup_iters=2, timeout_s=90, master_port=free_port())
    assert [(r.node, r.passed) for r in report.nodes] == [(n, True) for n in pair], report
    (group,) = report.groups
    assert group.passed and list(group.members) == pair, group
    assert group.node.startswith("domain:") and group.backend == "gloo"
    assert [s.bytes for s in group.sizes] == [M, 4 * M]
    assert all(s.busbw_gbps > 0 and s.wrong == 0 for s in group.sizes)
    for node in pair:
        evidence = fleet.read(node)
        assert evidence.verdict == "ok" and evidence.detail["group"] == group.node
        assert evidence.detail["world_size"] == 4 and evidence.detail["members"] == pair
        stored = evidence.detail["sizes"]
        assert [s["bytes"] for s in stored] == [M, 4 * M]
        assert [s["busbw_gbps"] for s in stored] == [s.busbw_gbps for s in group.sizes]
        assert all(s["busbw_gbps"] > 0 and s["wrong"] == 0 for s in stored)
        assert evidence.detail["busbw_gbps"] == group.busbw_gbps == stored[-1]["busbw_gbps"]


def test_two_nodes_of_different_domains_burn_in_as_a_cross_domain_pair(fleet: SimFleet) -> None:
    pair = [NODES[0], NODES[4]]  # gb300-d0-t00 (its domain peer not asked for), gb300-d2-t00
    report = fleet.burnin(nodes=pair, cross_domain=True, ranks_per_node=1, sizes="1M", iters=3,
                          warmup_iters=1, timeout_s=90, master_port=free_port())
    assert [(r.node, r.passed) for r in report.nodes] == [(n, True) for n in pair], report
    (group,) = report.groups  # each is alone in its domain here: no domain group, one pair
    first, second = group.members  # in the order of their (fabric) domain ids
    assert {first, second} == set(pair) and group.node == f"pair:{first}+{second}", group
    assert group.passed and group.backend == "gloo", group
    assert all(s.busbw_gbps > 0 and s.wrong == 0 for s in group.sizes)
    for node in pair:
        evidence = fleet.read(node)
        assert evidence.verdict == "ok" and evidence.detail["group"] == group.node
        assert evidence.detail["world_size"] == 2


def test_a_slow_node_is_an_outlier_and_the_gate_rejects_it_and_admits_its_peers(
    fleet: SimFleet,
) -> None:
    burned = cli(fleet.address, "burnin", "--all", "--ranks-per-node", "2", "--sizes", "1M,4M",
                 "--iters", "5", "--warmup", "2", "--repeats", "4", "--timeout", "120",
                 "--max-parallel", "1", "--option", f"{SLOW}:slowdown=4", "--json")
    assert burned.exit_code == EXIT_REJECTED, burned.output
    body = json.loads(burned.stdout)
    results = {r["node"]: r for r in body["nodes"]}
    assert sorted(results) == sorted(NODES) and body["groups"] == []
    slow = results[SLOW]
    assert (slow["passed"], slow["check"], slow["severity"]) == (False, "burnin_outlier",
                                                                 "critical"), body
    assert slow["busbw_gbps"] < 0.5 * slow["cohort_median_gbps"]
    assert [s["bytes"] for s in slow["sizes"]] == [M, 4 * M, 4 * M, 4 * M, 4 * M]
    for node in NODES:
        if node != SLOW:
            assert results[node]["passed"], body
    assert f"1 burn-in(s) failed: {SLOW}" in burned.stderr

    gated = cli(fleet.address, "preflight", "--all", "--burnin", "--json")
    assert gated.exit_code == EXIT_REJECTED, gated.output
    verdicts = json.loads(gated.stdout)
    assert sorted(verdicts["admitted"]) == sorted(n for n in NODES if n != SLOW)
    (rejected,) = verdicts["rejected"]
    assert rejected["node"] == SLOW
    (reason,) = rejected["reasons"]
    assert reason["check"] == "burnin" and reason["severity"] == "critical"
    assert reason["message"].startswith("burn-in failed: burnin_outlier: all-reduce busbw")
    assert 0 <= reason["evidence_age_s"] < 120
    assert reason["evidence_id"] == slow["evidence_id"]

    shown = cli(fleet.address, "node", "show", SLOW, "--json")  # the history carries it too
    burnin = json.loads(shown.stdout)["burnin"]
    assert (burnin["passed"], burnin["check"]) == (False, "burnin_outlier")
    assert burnin["evidence_id"] == slow["evidence_id"]
    assert "FAILED (burnin_outlier)" in cli(fleet.address, "node", "show", SLOW).stdout


def test_a_hung_worker_is_killed_at_its_timeout_and_stored_as_critical(fleet: SimFleet) -> None:
    node = NODES[-1]
    started = time.monotonic()
    report = fleet.burnin(nodes=[node], ranks_per_node=1, sizes="1M", iters=2, timeout_s=4,
                          node_options={node: "hang=1"})
    took = time.monotonic() - started
    (result,) = report.nodes
    assert (result.passed, result.check, result.severity) == (
        False, "burnin_failed", fleet_pb2.SEVERITY_CRITICAL)
    assert result.message.startswith("burn-in did not complete: timed out: burn-in exceeded its "
                                     "4 s timeout; workers killed"), result.message
    assert 4 <= took < 4 + 15, took  # killed by the agent at the deadline, not by our grace
    workers = [p for p in psutil.Process(fleet.agents[node].pid).children(recursive=True)
               if "agent.burnin.worker" in " ".join(p.cmdline())]
    assert workers == []
    evidence = fleet.read(node)
    assert evidence.verdict == "critical" and evidence.detail["timed_out"] is True
    assert str(evidence.id) == result.evidence_id

    gated = cli(fleet.address, "preflight", node, "--burnin", "--json")
    assert gated.exit_code == EXIT_REJECTED, gated.output
    (reason,) = json.loads(gated.stdout)["rejected"][0]["reasons"]
    assert reason["message"].startswith("burn-in failed: burnin_failed: burn-in did not complete: "
                                        "timed out")


def test_preflight_retests_an_untrusted_node_with_a_judged_burn_in_on_its_agent(
    fleet: SimFleet,
) -> None:
    node = NODES[2]
    for step in (("drain", node, "--reason", "cable swap"), ("undrain", node)):
        assert cli(fleet.address, *step).exit_code == 0
    before = fleet.read(node)  # any from before the drain is no longer trusted: re-tested
    gated = cli(fleet.address, "preflight", node, "--burnin", "--json")
    assert gated.exit_code == 0, gated.output
    assert json.loads(gated.stdout)["admitted"] == [node]
    evidence = fleet.read(node)
    assert before is None or evidence.id != before.id
    assert evidence.source.startswith("burnin:b-"), evidence
    assert (evidence.verdict, evidence.detail["judged"], evidence.detail["check"]) == (
        "ok", True, "burnin")
    assert (evidence.detail["backend"], evidence.detail["world_size"]) == ("gloo", 4)  # 4 GPUs
    assert [s["bytes"] for s in evidence.detail["sizes"]] == [M, 4 * M]
    assert all(s["busbw_gbps"] > 0 and s["wrong"] == 0 for s in evidence.detail["sizes"])
    shown = json.loads(cli(fleet.address, "node", "show", node, "--json").stdout)
    assert shown["burnin"]["evidence_id"] == str(evidence.id)
