"""InfiniBand/RoCE ports from `<root>/sys/class/infiniband/<dev>/ports/<n>/`.

Reads `state` ("4: ACTIVE"), `phys_state` ("5: LinkUp"), `rate` ("400 Gb/sec (4X NDR)"),
`link_layer` and every file under `counters/`, plus the device's PCI address and NUMA node
from its `device` link. A node without `/sys/class/infiniband` (a laptop) has no ports; that is
recorded as NOT_SUPPORTED, not as an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from agent.host.pci import normalize_bdf, numa_node_of
from agent.host.sysfs import list_dir, read_attr, read_int, required, resolve_under
from agent.model import IbPort, ReadStatus, Unavailable

# Port error counters (as opposed to data/packet counters) that operators alert on.
IB_ERROR_COUNTERS: frozenset[str] = frozenset(
    {
        "symbol_error",
        "link_error_recovery",
        "link_downed",
        "port_rcv_errors",
        "port_rcv_remote_physical_errors",
        "port_rcv_switch_relay_errors",
        "port_xmit_discards",
        "port_xmit_constraint_errors",
        "port_rcv_constraint_errors",
        "local_link_integrity_errors",
        "excessive_buffer_overrun_errors",
        "VL15_dropped",
    }
)

MAX_DEVICES = 64
MAX_PORTS_PER_DEVICE = 16
MAX_COUNTERS_PER_PORT = 64

_ENUM = re.compile(r"^\s*(?:\d+\s*:)?\s*(?P<name>.*?)\s*$", re.DOTALL)
_DIGITS = re.compile(r"(\d+)")
_RATE = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*Gb/sec\b")

Problems = dict[str, Unavailable]
T = TypeVar("T")


def parse_state(text: str) -> str:
    """`"4: ACTIVE"` -> `"ACTIVE"`; a value without a numeric prefix is kept as is."""
    m = _ENUM.match(text)
    name = m["name"] if m else ""
    if not name:
        raise ValueError("empty state")
    return name


def parse_rate(text: str) -> float:
    """`"400 Gb/sec (4X NDR)"` -> `400.0` (Gb/s)."""
    m = _RATE.match(text)
    if m is None:
        raise ValueError(f"not a rate: {text[:40]!r}")
    return float(m["value"])


def natural_key(name: str) -> tuple[tuple[int, str], ...]:
    """Sort key that puts mlx5_2 before mlx5_10."""
    return tuple((int(t), "") if t.isdigit() else (-1, t) for t in _DIGITS.split(name))


DeviceLocations = dict[str, tuple[str, int | None]]


def read_ib_ports(
    root: Path, locations: DeviceLocations | None = None
) -> tuple[tuple[IbPort, ...], Problems]:
    """Every port of every IB/RoCE device, and the reads that failed, keyed in detail
    (`ib_ports`, `ib_ports:<dev>:device`, `ib_ports:<dev>/<port>:<attr>`). A port whose
    `state`/`phys_state`/`link_layer` could not be read has "" there, `rate_gbps` None.

    `locations` (device -> PCI address, NUMA node) memoises the device links across sweeps.
    """
    memo: DeviceLocations = locations if locations is not None else {}
    problems: Problems = {}
    class_dir = root / "sys" / "class" / "infiniband"
    devices = list_dir(class_dir)
    if isinstance(devices, Unavailable):
        problems["ib_ports"] = devices
        return (), problems
    if len(devices) > MAX_DEVICES:
        problems["ib_ports"] = Unavailable(
            ReadStatus.ERROR, f"{len(devices)} devices, read the first {MAX_DEVICES}"
        )
    ports: list[IbPort] = []
    for device in sorted(devices, key=natural_key)[:MAX_DEVICES]:
        ports.extend(_read_device(root, class_dir / device, device, memo, problems))
    return tuple(ports), problems


def _read_device(
    root: Path, dev_dir: Path, device: str, memo: DeviceLocations, problems: Problems
) -> list[IbPort]:
    pci_bus_id: str | None
    numa: int | None
    if device in memo:
        pci_bus_id, numa = memo[device]
    else:
        pci_bus_id, numa = _device_location(root, dev_dir, device, problems)
        if pci_bus_id is not None:
            memo[device] = (pci_bus_id, numa)
    names = list_dir(dev_dir / "ports")
    if isinstance(names, Unavailable):
        problems[f"ib_ports:{device}"] = names
        return []
    numbers = sorted(int(n) for n in names if n.isdecimal())
    if len(numbers) > MAX_PORTS_PER_DEVICE:
        problems[f"ib_ports:{device}"] = Unavailable(
            ReadStatus.ERROR, f"{len(numbers)} ports, read the first {MAX_PORTS_PER_DEVICE}"
        )
    return [
        _read_port(dev_dir / "ports" / str(n), device, n, pci_bus_id, numa, problems)
        for n in numbers[:MAX_PORTS_PER_DEVICE]
    ]


def _device_location(
    root: Path, dev_dir: Path, device: str, problems: Problems
) -> tuple[str | None, int | None]:
    resolved = resolve_under(root, dev_dir / "device")
    if isinstance(resolved, Unavailable):
        problems[f"ib_ports:{device}:device"] = resolved
        return None, None
    bdf = normalize_bdf(resolved.name)
    if bdf is None:  # a soft device (rxe, siw) sits on a netdev, not a PCI function
        problems[f"ib_ports:{device}:device"] = Unavailable(
            ReadStatus.NOT_SUPPORTED, f"not a PCI device: {resolved.name}"
        )
        return None, None
    return bdf, numa_node_of(resolved)


def _read_port(
    port_dir: Path,
    device: str,
    port: int,
    pci_bus_id: str | None,
    numa: int | None,
    problems: Problems,
) -> IbPort:
    key = f"ib_ports:{device}/{port}"
    state = _parsed(port_dir / "state", parse_state, f"{key}:state", problems)
    phys = _parsed(port_dir / "phys_state", parse_state, f"{key}:phys_state", problems)
    rate = _parsed(port_dir / "rate", parse_rate, f"{key}:rate", problems)
    link_layer = required(read_attr(port_dir / "link_layer"))
    if isinstance(link_layer, Unavailable):
        problems[f"{key}:link_layer"] = link_layer
        link_layer = ""
    return IbPort(
        device=device,
        port=port,
        state=state or "",
        phys_state=phys or "",
        rate_gbps=rate,
        link_layer=link_layer,
        counters=_read_counters(port_dir / "counters", key, problems),
        pci_bus_id=pci_bus_id,
        numa_node=numa,
    )


def _parsed(path: Path, parse: Callable[[str], T], key: str, problems: Problems) -> T | None:
    text = required(read_attr(path))
    if isinstance(text, Unavailable):
        problems[key] = text
        return None
    try:
        return parse(text)
    except ValueError as exc:
        problems[key] = Unavailable(ReadStatus.ERROR, str(exc))
        return None


def _read_counters(counters_dir: Path, key: str, problems: Problems) -> dict[str, int]:
    names = list_dir(counters_dir)
    if isinstance(names, Unavailable):
        problems[f"{key}:counters"] = names
        return {}
    counters: dict[str, int] = {}
    for name in names[:MAX_COUNTERS_PER_PORT]:
        value = read_int(counters_dir / name)
        if isinstance(value, Unavailable):
            problems[f"{key}:counters/{name}"] = value
        else:
            counters[name] = value
    return counters
