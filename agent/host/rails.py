"""GPU <-> NIC rail map by PCIe affinity.

On an HGX node each GPU has "its" NIC behind the same PCIe switch; NCCL uses that pairing and
a rail-aligned placement depends on it. `assign_rails` is the pure decision; `rail_map` reads
the PCIe tree from sysfs and calls it.

Affinity of a GPU and a NIC port, compared as a tuple (bigger is closer):
1. how many PCIe bridges they share below the host bridge (the deepest common switch; 0 when
   they only meet at a root complex: nvidia-smi's PIX/PXB > 0, PHB/NODE/SYS = 0),
2. whether they share the host bridge (PHB),
3. whether they share the NUMA node (NODE),
and ties are broken by order (GPU index, then NIC port order). Assignment is greedy over all
pairs from the closest down, one NIC port per GPU while unused ports remain; with more GPUs than
ports the rest share their closest port.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from agent.host.pci import PciLocation, PciTopology
from agent.model import IbPort, Unavailable

Affinity = tuple[int, int, int]


def affinity(gpu: PciLocation | None, nic: PciLocation | None) -> Affinity:
    """How close a GPU and a NIC are in the PCIe tree (see the module docstring)."""
    if gpu is None or nic is None:
        return (0, 0, 0)
    same_bridge = gpu.host_bridge == nic.host_bridge
    shared = 0
    if same_bridge:
        for a, b in zip(gpu.bridges, nic.bridges, strict=False):
            if a != b:
                break
            shared += 1
    same_numa = gpu.numa_node is not None and gpu.numa_node == nic.numa_node
    return (shared, int(same_bridge), int(same_numa))


def assign_rails(
    gpus: Mapping[int, PciLocation | None],
    nics: Sequence[tuple[str, PciLocation | None]],
) -> dict[int, str]:
    """GPU index -> NIC rail name ("mlx5_0/1"); pure. Unknown locations fall back to order."""
    if not nics:
        return {}
    gpu_order = sorted(gpus)
    pairs = sorted(
        (
            (affinity(gpus[g], loc), -gi, -ni, g, name)
            for gi, g in enumerate(gpu_order)
            for ni, (name, loc) in enumerate(nics)
        ),
        reverse=True,
    )
    rails: dict[int, str] = {}
    used: set[str] = set()
    for _aff, _gi, _ni, gpu, name in pairs:
        if gpu not in rails and name not in used:
            rails[gpu] = name
            used.add(name)
    for _aff, _gi, _ni, gpu, name in pairs:  # more GPUs than ports: share the closest
        rails.setdefault(gpu, name)
    return rails


def rail_name(port: IbPort) -> str:
    """The rail's name: `<device>/<port>`."""
    return f"{port.device}/{port.port}"


def rail_map(
    gpu_pci_bus_ids: Mapping[int, str],
    ports: Sequence[IbPort],
    root: Path = Path("/"),
    problems: dict[str, Unavailable] | None = None,
    topology: PciTopology | None = None,
) -> dict[int, str]:
    """GPU index -> "mlx5_N/port" by PCIe affinity read under `<root>/sys`.

    A GPU or NIC whose place in the PCIe tree cannot be read still gets a rail (by NUMA or
    order); the failed read is added to `problems` as `rails:gpu<i>` / `rails:<device>`.
    Pass a long-lived `topology` to skip re-resolving the PCIe tree every sweep.
    """
    found = problems if problems is not None else {}
    tree = topology if topology is not None else PciTopology(root)

    def where(bdf: str | None, key: str) -> PciLocation | None:
        if bdf is None:
            return None
        loc = tree.locate(bdf)
        if isinstance(loc, Unavailable):
            found[key] = loc
            return None
        return loc

    gpus = {i: where(bdf, f"rails:gpu{i}") for i, bdf in gpu_pci_bus_ids.items()}
    nics = [(rail_name(p), where(p.pci_bus_id, f"rails:{p.device}")) for p in ports]
    return assign_rails(gpus, nics)
