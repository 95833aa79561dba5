"""The simulated fleet: layout in NVLink domains, routing of faults and the inbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agent.gpu.simulated import (
    FaultKind,
    SimFault,
    SimFleet,
    SimSpecError,
    build_simulated_backend,
    parse_sim_spec,
)
from gpufleet_common.clock import FakeClock


def fleet(spec: str, clock: FakeClock | None = None) -> SimFleet:
    return SimFleet.from_spec(parse_sim_spec(spec), clock or FakeClock())


def test_gb300_fleet_is_laid_out_in_nvl72_domains() -> None:
    f = fleet("gb300:nodes=36,seed=5")
    names = f.node_names()
    assert names[:2] == ["gb300-d0-t00", "gb300-d0-t01"]
    assert names[17:19] == ["gb300-d0-t17", "gb300-d1-t00"]
    assert len(names) == len(set(names)) == 36
    domains = f.domains()
    assert sorted(len(members) for members in domains.values()) == [18, 18]
    for domain, members in domains.items():
        for name in members:
            topo = f.backend(name).topology()
            assert topo.nvlink_domain == domain
            assert topo.tray == int(name[-2:]) and topo.rack == f"rack-{topo.domain_index:03d}"
            fabrics = {d.sample().fabric for d in f.backend(name).devices()}
            assert {(x.cluster_uuid, x.clique_id) for x in fabrics if x is not None} == {
                (topo.cluster_uuid, topo.clique_id)
            }
    assert len({f.node(n).cluster_uuid for n in names}) == 2


def test_domain_size_and_h100_domains() -> None:
    assert sorted(map(len, fleet("gb300:nodes=36,domain_size=9").domains().values())) == [9] * 4
    h100 = fleet("h100_sxm:nodes=12")
    assert h100.node_names()[-1] == "h100-n011"
    assert h100.domains() == {name: [name] for name in h100.node_names()}
    assert {h100.node(n).rack for n in h100.node_names()} == {"rack-000", "rack-001", "rack-002"}
    assert fleet("h100_sxm:nodes=1500").node_names()[-1] == "h100-n1499"


def test_firmware_is_uniform_across_the_fleet_unless_it_drifts() -> None:
    f = fleet("gb300:nodes=6,fault=firmware_drift@gb300-d0-t04;driver=575.57.08")
    seen = {
        (n, f.backend(n).system().driver_version, d.sample().vbios_version)
        for n in f.node_names()
        for d in f.backend(n).devices()
    }
    drifted = {(n, drv, vbios) for n, drv, vbios in seen if n == "gb300-d0-t04"}
    assert {(drv, vbios) for _, drv, vbios in seen - drifted} == {("580.95.05", "97.10.4A.00.06")}
    assert {(drv, vbios) for _, drv, vbios in drifted} == {("575.57.08", "97.10.2F.00.03")}


def test_backends_are_created_once_and_unknown_names_are_refused() -> None:
    f = fleet("gb300:nodes=4")
    assert f.backend("gb300-d0-t03") is f.backend("gb300-d0-t03")
    with pytest.raises(KeyError, match=re.escape("gb300-d0-t00 .. gb300-d0-t03")):
        f.backend("gb300-d0-t04")


def test_late_backends_read_as_if_created_at_the_start() -> None:
    spec = "h100_sxm:nodes=2,load=0.4,fault=ecc_dbe@h100-n001/gpu3+30s"
    early_clock, late_clock = FakeClock(), FakeClock()
    early, late = fleet(spec, early_clock), fleet(spec, late_clock)
    early.backend("h100-n001")
    early_clock.advance(40.0)
    late_clock.advance(40.0)
    a, b = early.backend("h100-n001"), late.backend("h100-n001")
    assert [d.sample() for d in a.devices()] == [d.sample() for d in b.devices()]
    assert a.drain_xid_events() == b.drain_xid_events() != []


def test_faults_reach_only_their_node() -> None:
    clock = FakeClock()
    f = fleet("gb300:nodes=4,fault=xid79@gb300-d0-t02/gpu1+5s,fault=ecc_dbe@gpu0", clock)
    f.inject(SimFault(FaultKind.XID, gpu=3, node="gb300-d0-t03", params={"code": 79}))
    clock.advance(5.0)
    lost = {(n, d.index) for n in f.node_names() for d in f.backend(n).devices() if d.sample().lost}
    assert lost == {("gb300-d0-t02", 1), ("gb300-d0-t03", 3)}
    dbe = [n for n in f.node_names() if f.backend(n).devices()[0].sample().ecc_dbe_volatile]
    assert dbe == ["gb300-d0-t00"]  # a fault naming no node hits the first node
    f.set_load(0.7, ["gb300-d0-t01"])
    assert [f.backend(n).load for n in f.node_names()] == [0.0, 0.7, 0.0, 0.0]


def test_build_simulated_backend_picks_or_names_the_node() -> None:
    clock = FakeClock()
    spec = parse_sim_spec("h100_sxm:nodes=3")
    assert build_simulated_backend(spec, None, clock).name == "h100-n000"
    assert build_simulated_backend(spec, "h100-n002", clock).name == "h100-n002"
    with pytest.raises(SimSpecError, match="'worker-7' is not in the simulated fleet"):
        build_simulated_backend(spec, "worker-7", clock)
    # a one-node spec takes the agent's own hostname; faults naming the generated name still apply
    single = parse_sim_spec("h100_sxm:fault=xid79@h100-n000/gpu2")
    backend = build_simulated_backend(single, "worker-7", clock)
    assert backend.name == backend.topology().nvlink_domain == "worker-7"
    assert backend.devices()[2].sample().lost


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_inbox_applies_appended_lines_once(tmp_path: Path) -> None:
    inbox = tmp_path / "faults"
    clock = FakeClock()
    backend = build_simulated_backend(parse_sim_spec(f"h100_sxm:inbox={inbox}"), None, clock)
    assert backend.devices()[1].sample().lost is False  # no file yet: nothing, no error
    _append(inbox, "# a comment\n\nxid79@gp")  # a partial line waits for its newline
    assert not backend.devices()[1].sample().lost
    _append(inbox, "u1\nnot a fault\necc_dbe@gpu3;count=2\nxid79@gpu42\n")
    assert backend.devices()[1].sample().lost
    assert backend.devices()[3].sample().ecc_dbe_volatile == 2
    assert [e.xid for e in backend.drain_xid_events()] == [79, 48]
    errors = backend.inbox_errors()
    assert len(errors) == 2
    assert "line 4" in errors[0] and "unknown fault kind 'not a fault'" in errors[0]
    assert "line 6" in errors[1] and "gpu 42 out of range" in errors[1]
    clock.advance(1.0)
    backend.devices()[0].sample()
    assert backend.drain_xid_events() == []  # nothing is applied twice


def test_inbox_file_replaced_is_read_from_its_start(tmp_path: Path) -> None:
    inbox = tmp_path / "faults"
    inbox.write_text("ecc_dbe@gpu0\n")
    backend = build_simulated_backend(parse_sim_spec(f"h100_sxm:inbox={inbox}"), None, FakeClock())
    backend.devices()[0].sample()
    fresh = tmp_path / "faults.new"
    fresh.write_text("ecc_dbe@gpu1\n")
    os.replace(fresh, inbox)
    assert [s.ecc_dbe_volatile for s in (d.sample() for d in backend.devices())][:3] == [1, 1, 0]


def test_inbox_in_a_multi_node_fleet_routes_by_node(tmp_path: Path) -> None:
    inbox = tmp_path / "faults"
    f = fleet(f"gb300:nodes=4,inbox={inbox}")
    _append(inbox, "ecc_dbe@gb300-d0-t02/gpu1\nxid48@gpu0\nxid79@gb300-d9-t00/gpu0\n")
    assert f.backend("gb300-d0-t03").devices()[1].sample().ecc_dbe_volatile == 0  # reads inbox
    assert f.backend("gb300-d0-t02").devices()[1].sample().ecc_dbe_volatile == 1
    assert [e.xid for e in f.backend("gb300-d0-t00").drain_xid_events()] == [48]
    assert f.backend("gb300-d0-t01").drain_xid_events() == []
    assert [("no node 'gb300-d9-t00'" in e) for e in f.inbox_errors()] == [True]


def test_agent_processes_sharing_an_inbox_take_only_their_own_lines(tmp_path: Path) -> None:
    inbox = tmp_path / "faults"
    spec = parse_sim_spec(f"h100_sxm:nodes=3,inbox={inbox}")
    clock = FakeClock()
    mine = build_simulated_backend(spec, "h100-n001", clock)
    _append(inbox, "xid79@h100-n002/gpu0\nxid79@gpu0\nxid79@h100-n001/gpu3\nxid79@h100-n099/gpu0\n")
    assert [d.index for d in mine.devices() if d.sample().lost] == [3]
    assert [("no node 'h100-n099'" in e) for e in mine.inbox_errors()] == [True]


_AGENT = """
import sys, time
from gpufleet_common.clock import SystemClock
from agent.gpu.simulated import build_simulated_backend, parse_sim_spec
backend = build_simulated_backend(parse_sim_spec(sys.argv[1]), None, SystemClock())
print("ready", flush=True)
xids, deadline = [], time.monotonic() + 20
while time.monotonic() < deadline:
    lost = backend.devices()[1].sample().lost
    xids += [e.xid for e in backend.drain_xid_events()]
    if lost and xids:
        print("lost", xids, flush=True)
        sys.exit(0)
    time.sleep(0.02)
sys.exit(3)
"""


def test_inbox_injects_into_another_process(tmp_path: Path) -> None:
    inbox = tmp_path / "faults"
    proc = subprocess.Popen(
        [sys.executable, "-c", _AGENT, f"h100_sxm:inbox={inbox}"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        _append(inbox, "xid79@gpu1\n")
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert out.strip() == "lost [79]"


def test_a_2048_node_fleet_sweeps_and_finds_its_one_lost_gpu() -> None:
    """The benchmark's fleet shape works end to end (its cost: bench/agent_sweep.py)."""
    clock = FakeClock()
    f = fleet("h100_sxm:nodes=2048,load=0.5,fault=xid79@h100-n1000/gpu3", clock)
    lost = []
    for backend in f.backends():
        backend.system()
        lost += [(backend.name, d.index) for d in backend.devices() if d.sample().lost]
        backend.drain_xid_events()
        backend.host_sample()
    assert lost == [("h100-n1000", 3)]

