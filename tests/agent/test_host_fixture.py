"""The `tests/data/sysfs/hgx-h100/` fixture: sysfs of an 8-GPU H100 HGX node with 8 NDR NICs.

The tree is committed (symlinks included) so it can be read as is; this module generates it.
Rebuild with `python -m tests.agent.test_host_fixture`; the test below fails when the committed
tree and the generator disagree.

Topology (as on HGX H100 baseboards): 4 PCIe switches, two per CPU socket. Each switch has two
second-level switches, and each of those holds one GPU and one ConnectX-7, so a GPU shares its
deepest switch with exactly one NIC:

    pci0000:BB / BB:01.0 root port / (BB+1):00.0 switch / (BB+2):0k.0 downstream port
      / (BB+3+4k):00.0 sub-switch / (BB+4+4k):00.0 -> GPU (BB+5+4k):00.0
                                  / (BB+4+4k):01.0 -> NIC (BB+6+4k):00.0

NIC names follow DGX H100 (mlx5_1/2/7/8 are storage NICs, absent here), and on the last switch
the two names are swapped relative to slot order, so "by order" would pair GPU 6/7 wrongly.
Port states: mlx5_5 (GPU 3's rail) is DOWN/Polling; mlx5_6 (GPU 4's rail) is ACTIVE at 200 Gb/s
(HDR) instead of 400 (NDR) and has symbol errors.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "sysfs" / "hgx-h100"

SWITCH_BUSES = (0x10, 0x30, 0x90, 0xB0)
SWITCH_NUMA = (0, 0, 1, 1)
NIC_NAMES = ("mlx5_0", "mlx5_3", "mlx5_4", "mlx5_5", "mlx5_6", "mlx5_9", "mlx5_11", "mlx5_10")

DATA_COUNTERS = {
    "multicast_rcv_packets": 0,
    "multicast_xmit_packets": 0,
    "port_rcv_data": 918273645512,
    "port_rcv_packets": 2718281828,
    "port_xmit_data": 918273641234,
    "port_xmit_packets": 2718281801,
    "port_xmit_wait": 1024,
    "unicast_rcv_packets": 2718281828,
    "unicast_xmit_packets": 2718281801,
}
ERROR_COUNTERS = (
    "VL15_dropped",
    "excessive_buffer_overrun_errors",
    "link_downed",
    "link_error_recovery",
    "local_link_integrity_errors",
    "port_rcv_constraint_errors",
    "port_rcv_errors",
    "port_rcv_remote_physical_errors",
    "port_rcv_switch_relay_errors",
    "port_xmit_constraint_errors",
    "port_xmit_discards",
    "symbol_error",
)
PORT_OVERRIDES: dict[str, dict[str, str]] = {
    "mlx5_5": {"state": "1: DOWN", "phys_state": "2: Polling", "rate": "10 Gb/sec (4X SDR)"},
    "mlx5_6": {"rate": "200 Gb/sec (4X HDR)"},
}
COUNTER_OVERRIDES: dict[str, dict[str, int]] = {
    "mlx5_5": {"link_downed": 3},
    "mlx5_6": {"symbol_error": 17, "link_error_recovery": 2, "link_downed": 1},
}


def bdf(bus: int, dev: int = 0) -> str:
    """sysfs PCI address on domain 0."""
    return f"0000:{bus:02x}:{dev:02x}.0"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def _pci_device(sys_dir: Path, path: Path, vendor: str, device: str, numa: int) -> None:
    _write(path / "vendor", vendor)
    _write(path / "device", device)
    _write(path / "numa_node", str(numa))
    _link(sys_dir / "bus" / "pci" / "devices" / path.name, path)


def _nic(sys_dir: Path, nic_dir: Path, name: str) -> None:
    ib_dir = nic_dir / "infiniband" / name
    _link(ib_dir / "device", nic_dir)
    port = ib_dir / "ports" / "1"
    attrs = {
        "state": "4: ACTIVE",
        "phys_state": "5: LinkUp",
        "rate": "400 Gb/sec (4X NDR)",
        "link_layer": "InfiniBand",
        "lid": "0x12",
    }
    attrs.update(PORT_OVERRIDES.get(name, {}))
    for attr, text in attrs.items():
        _write(port / attr, text)
    counters = dict(DATA_COUNTERS)
    counters.update(dict.fromkeys(ERROR_COUNTERS, 0))
    counters.update(COUNTER_OVERRIDES.get(name, {}))
    for counter, value in sorted(counters.items()):
        _write(port / "counters" / counter, str(value))
    _link(sys_dir / "class" / "infiniband" / name, ib_dir)


def build(dest: Path) -> None:
    """Write the tree under `dest` (which must not exist)."""
    sys_dir = dest / "sys"
    for s, base in enumerate(SWITCH_BUSES):
        numa = SWITCH_NUMA[s]
        root_port = sys_dir / "devices" / f"pci0000:{base:02x}" / bdf(base, 1)
        switch_up = root_port / bdf(base + 1)
        for p in (root_port, switch_up):
            _pci_device(sys_dir, p, "0x1000", "0xc030", numa)
        for k in (0, 1):
            sub = base + 3 + 4 * k
            down = switch_up / bdf(base + 2, k)
            sub_up = down / bdf(sub)
            gpu_port, nic_port = sub_up / bdf(sub + 1, 0), sub_up / bdf(sub + 1, 1)
            for p in (down, sub_up, gpu_port, nic_port):
                _pci_device(sys_dir, p, "0x1000", "0xc030", numa)
            _pci_device(sys_dir, gpu_port / bdf(sub + 2), "0x10de", "0x2330", numa)
            nic_dir = nic_port / bdf(sub + 3)
            _pci_device(sys_dir, nic_dir, "0x15b3", "0x1021", numa)
            _nic(sys_dir, nic_dir, NIC_NAMES[2 * s + k])


def gpu_bus_ids() -> dict[int, str]:
    """GPU index -> NVML-style PCI bus id, in NVML's (bus) order."""
    return {
        2 * s + k: f"00000000:{base + 5 + 4 * k:02X}:00.0"
        for s, base in enumerate(SWITCH_BUSES)
        for k in (0, 1)
    }


def _listing(base: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(base))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = path.read_text()
    return out


def test_committed_fixture_matches_its_generator(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    build(fresh)

    assert _listing(fresh) == _listing(FIXTURE)


def test_fixture_links_resolve_inside_the_tree() -> None:
    for name in NIC_NAMES:
        device = (FIXTURE / "sys" / "class" / "infiniband" / name / "device").resolve()
        assert FIXTURE in device.parents
        assert (device / "numa_node").is_file()
    for bus_id in gpu_bus_ids().values():
        bdf = "0000" + bus_id[8:].lower()
        gpu = (FIXTURE / "sys" / "bus" / "pci" / "devices" / bdf).resolve()
        assert (gpu / "vendor").read_text() == "0x10de\n"


if __name__ == "__main__":
    shutil.rmtree(FIXTURE, ignore_errors=True)
    build(FIXTURE)
    print(f"wrote {FIXTURE.name}")
