"""The psutil seam: memory, load, CPUs, disks and running services.

`HostProbe` is what the host reader needs; `PsutilProbe` is the only module that imports
psutil. Probe methods may raise; the reader turns every exception into an `Unavailable`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Protocol

import psutil

# Service name -> process names that mean it is running (comm of the daemon binary).
KNOWN_PROCESS_NAMES: Mapping[str, tuple[str, ...]] = {
    "nvidia-fabricmanager": ("nv-fabricmanager",),
    "nvidia-persistenced": ("nvidia-persistenced",),
    "nvidia-imex": ("nvidia-imex",),
    "nvidia-dcgm": ("nv-hostengine",),
}


def process_names_for(service: str) -> tuple[str, ...]:
    """Process names that satisfy a required service, given as a systemd unit name with or
    without ".service" (the name itself when it is not a known NVIDIA daemon)."""
    name = service.removesuffix(".service")
    return KNOWN_PROCESS_NAMES.get(name, (name,))


class NotMounted(OSError):
    """A configured disk mount is not a mount point (usage would describe the parent fs)."""


class HostProbe(Protocol):
    """Host facts; each call may raise, and each is cheap."""

    def memory(self) -> tuple[int, int]:
        """(total, available) bytes."""
        ...

    def load1(self) -> float:
        """One-minute load average."""
        ...

    def cpu_count(self) -> int | None:
        """Logical CPUs."""
        ...

    def disk_used_fraction(self, mount: str) -> float:
        """Used fraction 0..1 of the filesystem mounted at `mount`, as df computes it."""
        ...

    def running(self, process_names: Iterable[str]) -> set[str]:
        """Which of `process_names` have a live process."""
        ...


class PsutilProbe:
    """The real probe. Remembers the PID that matched each name, so a steady node costs a
    couple of syscalls per service instead of a scan of every process."""

    def __init__(self) -> None:
        self._pids: dict[str, psutil.Process] = {}

    def memory(self) -> tuple[int, int]:
        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)

    def load1(self) -> float:
        return float(os.getloadavg()[0])

    def cpu_count(self) -> int | None:
        return psutil.cpu_count(logical=True)

    def disk_used_fraction(self, mount: str) -> float:
        if not os.path.ismount(mount):
            raise NotMounted(f"{mount} is not a mount point")
        usage = psutil.disk_usage(mount)
        denominator = usage.used + usage.free
        return usage.used / denominator if denominator else 0.0

    def running(self, process_names: Iterable[str]) -> set[str]:
        wanted = set(process_names)
        found = {name for name in wanted if self._still_running(name)}
        missing = wanted - found
        if missing:
            for proc in psutil.process_iter(["name", "status"]):
                name = proc.info.get("name")
                if name in missing and proc.info.get("status") != psutil.STATUS_ZOMBIE:
                    self._pids[name] = proc
                    found.add(name)
        return found

    def _still_running(self, name: str) -> bool:
        proc = self._pids.get(name)
        if proc is None:
            return False
        try:
            # is_running() compares the create time, so a recycled PID does not count.
            alive = (
                proc.is_running() and proc.name() == name and proc.status() != psutil.STATUS_ZOMBIE
            )
        except psutil.Error:
            alive = False
        if not alive:
            del self._pids[name]
        return alive
