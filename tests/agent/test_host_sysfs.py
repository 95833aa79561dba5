"""IB/RoCE port reading from sysfs trees: parsing, the HGX H100 fixture, and broken trees."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.host import IB_ERROR_COUNTERS, normalize_bdf, parse_rate, parse_state, read_ib_ports
from agent.model import ReadStatus
from tests.agent.test_host_fixture import FIXTURE


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A private copy of the HGX fixture that a test may break."""
    dest = tmp_path / "root"
    shutil.copytree(FIXTURE, dest, symlinks=True)
    return dest


def port_dir(root: Path, device: str, port: int = 1) -> Path:
    return root / "sys" / "class" / "infiniband" / device / "ports" / str(port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4: ACTIVE", "ACTIVE"),
        ("1: DOWN", "DOWN"),
        ("5: LinkUp", "LinkUp"),
        ("2: Polling", "Polling"),
        ("3: Disabled\n", "Disabled"),
        ("ACTIVE", "ACTIVE"),
        ("7: PHY TEST", "PHY TEST"),
    ],
)
def test_parse_state(text: str, expected: str) -> None:
    assert parse_state(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "4: "])
def test_parse_state_rejects_empty(text: str) -> None:
    with pytest.raises(ValueError):
        parse_state(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("400 Gb/sec (4X NDR)", 400.0),
        ("200 Gb/sec (4X HDR)", 200.0),
        ("2.5 Gb/sec (1X SDR)", 2.5),
        ("100 Gb/sec (2X HDR)", 100.0),
        ("800 Gb/sec (4X XDR)", 800.0),
    ],
)
def test_parse_rate(text: str, expected: float) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "fast", "Gb/sec", "400 MB/sec"])
def test_parse_rate_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00000000:18:00.0", "0000:18:00.0"),  # NVML
        ("0000:1A:00.0", "0000:1a:00.0"),  # sysfs, upper case
        ("1a:00.1", "0000:1a:00.1"),  # lspci short form
        ("0001:b6:00.0", "0001:b6:00.0"),
        ("00010000:18:00.0", None),  # domain beyond 16 bits
        ("0000:18:00.8", None),  # function is 0..7
        ("../../etc/passwd", None),
        ("0000:18:00.0/../..", None),
        ("", None),
    ],
)
def test_normalize_bdf(text: str, expected: str | None) -> None:
    assert normalize_bdf(text) == expected


def test_fixture_ports_are_read_in_natural_order_with_state_rate_and_location() -> None:
    ports, problems = read_ib_ports(FIXTURE)

    assert problems == {}
    assert [p.device for p in ports] == [
        "mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_10", "mlx5_11",
    ]  # fmt: skip
    by_dev = {p.device: p for p in ports}
    healthy = by_dev["mlx5_0"]
    assert (healthy.port, healthy.state, healthy.phys_state) == (1, "ACTIVE", "LinkUp")
    assert (healthy.rate_gbps, healthy.link_layer) == (400.0, "InfiniBand")
    assert (healthy.pci_bus_id, healthy.numa_node) == ("0000:16:00.0", 0)
    assert by_dev["mlx5_11"].numa_node == 1
    down = by_dev["mlx5_5"]
    assert (down.state, down.phys_state, down.counters["link_downed"]) == ("DOWN", "Polling", 3)
    slow = by_dev["mlx5_6"]
    assert (slow.state, slow.rate_gbps, slow.counters["symbol_error"]) == ("ACTIVE", 200.0, 17)
    assert set(healthy.counters) >= IB_ERROR_COUNTERS
    assert healthy.counters["port_xmit_data"] == 918273641234


def test_no_infiniband_class_is_not_supported_not_an_error(tmp_path: Path) -> None:
    ports, problems = read_ib_ports(tmp_path)

    assert ports == ()
    assert problems["ib_ports"].status is ReadStatus.NOT_SUPPORTED


def test_broken_attributes_become_unavailable_and_the_rest_is_kept(tree: Path) -> None:
    port = port_dir(tree, "mlx5_3")
    (port / "rate").write_text("fast\n")
    (port / "state").unlink()
    (port / "counters" / "symbol_error").write_text("N/A\n")
    shutil.rmtree(port_dir(tree, "mlx5_4") / "counters")
    (port_dir(tree, "mlx5_9") / "link_layer").unlink()

    ports, problems = read_ib_ports(tree)

    by_dev = {p.device: p for p in ports}
    assert len(ports) == 8
    broken = by_dev["mlx5_3"]
    assert (broken.rate_gbps, broken.state, broken.phys_state) == (None, "", "LinkUp")
    assert "symbol_error" not in broken.counters
    assert broken.counters["link_downed"] == 0
    assert problems["ib_ports:mlx5_3/1:rate"].status is ReadStatus.ERROR
    assert problems["ib_ports:mlx5_3/1:state"].status is ReadStatus.ERROR  # always present
    assert problems["ib_ports:mlx5_3/1:counters/symbol_error"].status is ReadStatus.ERROR
    assert by_dev["mlx5_4"].counters == {}
    assert "ib_ports:mlx5_4/1:counters" in problems
    assert by_dev["mlx5_9"].link_layer == ""
    assert "ib_ports:mlx5_9/1:link_layer" in problems
    assert by_dev["mlx5_0"].rate_gbps == 400.0


def test_roce_port_and_soft_device_without_pci(tree: Path) -> None:
    (port_dir(tree, "mlx5_0") / "link_layer").write_text("Ethernet\n")
    soft = tree / "sys" / "devices" / "virtual" / "net" / "eth0"
    soft.mkdir(parents=True)
    rxe = tree / "sys" / "class" / "infiniband" / "rxe0"
    (rxe / "ports" / "1").mkdir(parents=True)
    os.symlink(os.path.relpath(soft, rxe), rxe / "device")
    for attr, text in {"state": "4: ACTIVE", "phys_state": "5: LinkUp"}.items():
        (rxe / "ports" / "1" / attr).write_text(text)

    ports, problems = read_ib_ports(tree)

    by_dev = {p.device: p for p in ports}
    assert by_dev["mlx5_0"].link_layer == "Ethernet"
    assert (by_dev["rxe0"].pci_bus_id, by_dev["rxe0"].state) == (None, "ACTIVE")
    assert problems["ib_ports:rxe0:device"].status is ReadStatus.NOT_SUPPORTED


def test_device_link_escaping_the_root_is_refused(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "0000:16:00.0"
    outside.mkdir(parents=True)
    (outside / "numa_node").write_text("0\n")
    link = tree / "sys" / "class" / "infiniband" / "mlx5_0" / "device"
    link.unlink()
    link.symlink_to(outside)

    ports, problems = read_ib_ports(tree)

    assert {p.device: p for p in ports}["mlx5_0"].pci_bus_id is None
    assert "outside" in problems["ib_ports:mlx5_0:device"].detail


def test_non_numeric_port_entries_are_ignored(tree: Path) -> None:
    (tree / "sys" / "class" / "infiniband" / "mlx5_0" / "ports" / "README").write_text("x")

    ports, _ = read_ib_ports(tree)

    assert [p.port for p in ports if p.device == "mlx5_0"] == [1]


def test_device_locations_are_memoised_across_reads(tree: Path) -> None:
    memo: dict[str, tuple[str, int | None]] = {}
    read_ib_ports(tree, memo)
    (tree / "sys" / "class" / "infiniband" / "mlx5_0" / "device").unlink()

    ports, problems = read_ib_ports(tree, memo)

    assert memo["mlx5_0"] == ("0000:16:00.0", 0)
    assert ports[0].pci_bus_id == "0000:16:00.0"
    assert "ib_ports:mlx5_0:device" not in problems
