"""GPU<->NIC rail map: the pure assignment (table-driven) and the HGX H100 fixture tree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.host import PciLocation, affinity, assign_rails, rail_map, read_ib_ports
from agent.host.pci import PciTopology, locate
from agent.model import ReadStatus, Unavailable
from tests.agent.test_host_fixture import FIXTURE, gpu_bus_ids

EXPECTED_HGX_RAILS = {
    0: "mlx5_0/1",
    1: "mlx5_3/1",
    2: "mlx5_4/1",
    3: "mlx5_5/1",
    4: "mlx5_6/1",
    5: "mlx5_9/1",
    6: "mlx5_11/1",  # names on the last switch are swapped relative to slot order
    7: "mlx5_10/1",
}


def loc(path: str, numa: int | None = 0, host_bridge: str = "pci0000:10") -> PciLocation:
    """A location from a compact bridge chain: "a/b/c" -> bridges (a, b), device c."""
    *bridges, bdf = path.split("/")
    return PciLocation(bdf=bdf, host_bridge=host_bridge, bridges=tuple(bridges), numa_node=numa)


CASES = [
    pytest.param(
        {0: loc("rp/sw/s0/g0"), 1: loc("rp/sw/s1/g1")},
        [("nicA/1", loc("rp/sw/s1/na")), ("nicB/1", loc("rp/sw/s0/nb"))],
        {0: "nicB/1", 1: "nicA/1"},
        id="deepest-shared-switch-wins-over-order",
    ),
    pytest.param(
        {0: loc("rp0/g0", numa=1, host_bridge="pci0000:10"),
         1: loc("rp1/g1", numa=0, host_bridge="pci0000:20")},
        [("nicA/1", loc("rp2/na", numa=0, host_bridge="pci0000:30")),
         ("nicB/1", loc("rp3/nb", numa=1, host_bridge="pci0000:40"))],
        {0: "nicB/1", 1: "nicA/1"},
        id="no-shared-switch-falls-back-to-numa",
    ),
    pytest.param(
        {0: loc("rp0/g0", numa=None, host_bridge="pci0000:10"),
         1: loc("rp0/g1", numa=None, host_bridge="pci0000:10")},
        [("nicA/1", loc("rp1/na", numa=None, host_bridge="pci0000:20")),
         ("nicB/1", loc("rp1/nb", numa=None, host_bridge="pci0000:10"))],
        {0: "nicB/1", 1: "nicA/1"},
        id="same-host-bridge-beats-nothing",
    ),
    pytest.param(
        {0: None, 1: None, 2: None},
        [("nicA/1", None), ("nicB/1", None), ("nicC/1", None)],
        {0: "nicA/1", 1: "nicB/1", 2: "nicC/1"},
        id="nothing-known-goes-by-order",
    ),
    pytest.param(
        {0: loc("rp/sw/s0/g0"), 1: loc("rp/sw/s0/g1")},
        [("nicA/1", loc("rp/sw/s1/na")), ("nicB/1", loc("rp/sw/s0/nb"))],
        {0: "nicB/1", 1: "nicA/1"},
        id="a-port-is-used-once-while-others-remain",
    ),
    pytest.param(
        {0: loc("rp/s0/g0"), 1: loc("rp/s0/g1"), 2: loc("rp/s1/g2"), 3: loc("rp/s1/g3")},
        [("nicA/1", loc("rp/s0/na")), ("nicB/1", loc("rp/s1/nb"))],
        {0: "nicA/1", 1: "nicA/1", 2: "nicB/1", 3: "nicB/1"},
        id="more-gpus-than-ports-share-the-closest",
    ),
    pytest.param({0: loc("rp/g0")}, [], {}, id="no-ports-no-rails"),
    pytest.param({}, [("nicA/1", loc("rp/na"))], {}, id="no-gpus-no-rails"),
]  # fmt: skip


@pytest.mark.parametrize(("gpus", "nics", "expected"), CASES)
def test_assign_rails(
    gpus: dict[int, PciLocation | None],
    nics: list[tuple[str, PciLocation | None]],
    expected: dict[int, str],
) -> None:
    assert assign_rails(gpus, nics) == expected


def test_assign_rails_does_not_depend_on_nic_listing_order() -> None:
    gpus: dict[int, PciLocation | None] = {i: loc(f"rp/sw/s{i}/g{i}") for i in range(4)}
    nics: list[tuple[str, PciLocation | None]] = [
        (f"nic{i}/1", loc(f"rp/sw/s{i}/n{i}")) for i in range(4)
    ]

    assert assign_rails(gpus, nics) == assign_rails(gpus, list(reversed(nics)))


def test_affinity_counts_shared_bridges_only_under_the_same_host_bridge() -> None:
    a = loc("rp/sw/s0/g0", host_bridge="pci0000:10")
    assert affinity(a, loc("rp/sw/s0/n0", host_bridge="pci0000:10")) == (3, 1, 1)
    assert affinity(a, loc("rp/sw/s1/n1", host_bridge="pci0000:10")) == (2, 1, 1)
    assert affinity(a, loc("rp/sw/s0/n0", host_bridge="pci0001:10")) == (0, 0, 1)
    assert affinity(a, None) == (0, 0, 0)


def test_fixture_rails_pair_each_gpu_with_the_nic_behind_its_switch() -> None:
    ports, _ = read_ib_ports(FIXTURE)
    problems: dict[str, Unavailable] = {}

    rails = rail_map(gpu_bus_ids(), ports, FIXTURE, problems)

    assert rails == EXPECTED_HGX_RAILS
    assert problems == {}


def test_fixture_locations_carry_bridges_and_numa() -> None:
    gpu = locate(FIXTURE, "00000000:B9:00.0")

    assert isinstance(gpu, PciLocation)
    assert gpu.host_bridge == "pci0000:b0"
    assert gpu.bridges[0] == "0000:b0:01.0" and len(gpu.bridges) == 5
    assert gpu.numa_node == 1


def test_unreadable_gpu_address_still_gets_a_rail_and_is_reported() -> None:
    ports, _ = read_ib_ports(FIXTURE)
    ids = gpu_bus_ids()
    ids[3] = "not-a-pci-address"
    ids[5] = "00000000:EE:00.0"  # well-formed, absent from this node
    problems: dict[str, Unavailable] = {}

    rails = rail_map(ids, ports, FIXTURE, problems)

    assert rails == EXPECTED_HGX_RAILS  # the two leftover ports go to the two unknown GPUs
    assert problems["rails:gpu3"].status is ReadStatus.ERROR
    assert problems["rails:gpu5"].status is ReadStatus.NOT_SUPPORTED


def test_topology_is_remembered_once_read(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root, symlinks=True)
    ports, _ = read_ib_ports(root)
    topology = PciTopology(root)
    first = rail_map(gpu_bus_ids(), ports, root, topology=topology)
    shutil.rmtree(root / "sys" / "bus")  # e.g. a GPU hot-removed after falling off the bus

    assert rail_map(gpu_bus_ids(), ports, root, topology=topology) == first
    assert rail_map(gpu_bus_ids(), ports, root) == {i: ports[i].device + "/1" for i in range(8)}
