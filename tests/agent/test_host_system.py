"""The psutil probe against this machine and real processes, and the host reader's composition."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
import pytest

from agent.collect import collect_node
from agent.gpu.backend import GpuDevice
from agent.host import HostReader, PsutilProbe, process_names_for, read_host
from agent.host.system import NotMounted
from agent.model import GpuSample, ReadStatus, SystemInfo, XidEvent
from gpufleet_common.clock import FakeClock
from tests.agent.test_host_fixture import FIXTURE, gpu_bus_ids
from tests.agent.test_host_rails import EXPECTED_HGX_RAILS


class FakeProbe:
    """A hand-written probe: fixed answers, or the exception a method should raise."""

    def __init__(
        self, fail: dict[str, Exception] | None = None, running: frozenset[str] = frozenset()
    ) -> None:
        self.fail = fail or {}
        self.names = running
        self.asked: list[set[str]] = []

    def _maybe_fail(self, method: str) -> None:
        if method in self.fail:
            raise self.fail[method]

    def memory(self) -> tuple[int, int]:
        self._maybe_fail("memory")
        return 2_000_000_000_000, 1_500_000_000_000

    def load1(self) -> float:
        self._maybe_fail("load1")
        return 3.5

    def cpu_count(self) -> int | None:
        self._maybe_fail("cpu_count")
        return 224

    def disk_used_fraction(self, mount: str) -> float:
        self._maybe_fail(f"disk:{mount}")
        return 0.25

    def running(self, process_names: Iterable[str]) -> set[str]:
        self._maybe_fail("running")
        wanted = set(process_names)
        self.asked.append(wanted)
        return wanted & self.names


Spawn = Callable[..., "subprocess.Popen[bytes]"]


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll until true, bounded in time."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Start a copy of `sleep` under a chosen executable name; kill all at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    sleep = shutil.which("sleep")
    assert sleep is not None

    def start(name: str, seconds: str = "30") -> subprocess.Popen[bytes]:
        exe = tmp_path / name
        if not exe.exists():
            shutil.copy(sleep, exe)
        proc = subprocess.Popen([str(exe), seconds])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(timeout=5)


def test_psutil_probe_reads_this_machine() -> None:
    probe = PsutilProbe()

    total, available = probe.memory()
    assert 0 < available <= total
    assert probe.load1() >= 0.0
    assert (probe.cpu_count() or 0) >= 1
    assert 0.0 < probe.disk_used_fraction("/") < 1.0


def test_a_directory_that_is_not_a_mount_point_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NotMounted):
        PsutilProbe().disk_used_fraction(str(tmp_path))


def test_services_are_found_by_process_name_and_lost_when_they_die(spawn: Spawn) -> None:
    probe = PsutilProbe()
    proc = spawn("gf-fake-svc")
    wait_for(lambda: psutil.Process(proc.pid).name() == "gf-fake-svc")

    assert probe.running(["gf-fake-svc", "gf-absent-svc"]) == {"gf-fake-svc"}
    assert probe.running(["gf-fake-svc"]) == {"gf-fake-svc"}  # served from the PID memo

    proc.kill()
    proc.wait(timeout=5)
    assert probe.running(["gf-fake-svc"]) == set()


def test_names_longer_than_the_kernel_comm_are_matched(spawn: Spawn) -> None:
    long_name = "gpufleet-persistenced-x"  # comm holds 15 characters, like nvidia-persistenced
    proc = spawn(long_name)
    wait_for(lambda: psutil.Process(proc.pid).name() == long_name)

    assert PsutilProbe().running([long_name]) == {long_name}


def test_a_zombie_does_not_count_as_running(spawn: Spawn) -> None:
    proc = spawn("gf-zombie-svc", "0")
    wait_for(lambda: psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE)

    assert PsutilProbe().running(["gf-zombie-svc"]) == set()


@pytest.mark.parametrize(
    ("service", "names"),
    [
        ("nvidia-fabricmanager", ("nv-fabricmanager",)),
        ("nvidia-fabricmanager.service", ("nv-fabricmanager",)),
        ("nvidia-persistenced", ("nvidia-persistenced",)),
        ("slurmd", ("slurmd",)),
        ("slurmd.service", ("slurmd",)),
    ],
)
def test_service_names_map_to_process_names(service: str, names: tuple[str, ...]) -> None:
    assert process_names_for(service) == names


def test_reader_composes_probe_ib_ports_and_rails() -> None:
    probe = FakeProbe(running=frozenset({"nv-fabricmanager"}))

    sample = read_host(
        FIXTURE,
        required_services=["nvidia-fabricmanager", "nvidia-persistenced"],
        disk_mounts=["/", "/scratch"],
        gpu_pci_bus_ids=gpu_bus_ids(),
        probe=probe,
    )

    assert (sample.mem_total_bytes, sample.mem_available_bytes) == (2 * 10**12, 15 * 10**11)
    assert (sample.load1, sample.cpu_count) == (3.5, 224)
    assert sample.disks == {"/": 0.25, "/scratch": 0.25}
    assert sample.services == {"nvidia-fabricmanager": True, "nvidia-persistenced": False}
    assert probe.asked == [{"nv-fabricmanager", "nvidia-persistenced"}]
    assert len(sample.ib_ports) == 8
    assert sample.rails == EXPECTED_HGX_RAILS
    assert sample.unavailable == {}


def test_every_failed_read_is_data_and_the_rest_is_kept() -> None:
    probe = FakeProbe(
        fail={
            "memory": PermissionError("denied"),
            "load1": OSError("no loadavg"),
            "cpu_count": RuntimeError("boom"),
            "disk:/scratch": NotMounted("/scratch is not a mount point"),
            "running": psutil.AccessDenied(1),
        }
    )

    sample = read_host(FIXTURE, ["nvidia-persistenced"], ["/", "/scratch"], probe=probe)

    assert (sample.mem_total_bytes, sample.load1, sample.cpu_count) == (None, None, None)
    assert sample.disks == {"/": 0.25}
    assert sample.services == {}
    assert {k: v.status for k, v in sample.unavailable.items()} == {
        "mem_total_bytes": ReadStatus.ERROR,
        "mem_available_bytes": ReadStatus.ERROR,
        "load1": ReadStatus.ERROR,
        "cpu_count": ReadStatus.ERROR,
        "disks": ReadStatus.ERROR,
        "services": ReadStatus.ERROR,
    }
    assert "PermissionError: denied" in sample.unavailable["mem_total_bytes"].detail
    assert "/scratch" in sample.unavailable["disks"].detail
    assert len(sample.ib_ports) == 8  # sysfs still read


def test_laptop_without_infiniband_has_no_ports_and_no_rails(tmp_path: Path) -> None:
    sample = read_host(tmp_path, [], gpu_pci_bus_ids={0: "00000000:01:00.0"}, probe=FakeProbe())

    assert (sample.ib_ports, sample.rails, sample.services) == ((), {}, {})
    assert sample.unavailable["ib_ports"].status is ReadStatus.NOT_SUPPORTED


def test_real_read_of_this_machine_never_raises() -> None:
    reader = HostReader(required_services=["gf-never-running"], disk_mounts=["/", "/gf-absent"])

    sample = reader.read({0: "00000000:01:00.0"})

    assert sample.mem_total_bytes and sample.mem_total_bytes > 0
    assert sample.services == {"gf-never-running": False}
    assert "/gf-absent is not a mount point" in sample.unavailable["disks"].detail
    assert os.path.ismount("/") and "/" in sample.disks


def test_port_and_rail_failures_roll_up_under_their_field(tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(FIXTURE, root, symlinks=True)
    (root / "sys/class/infiniband/mlx5_3/ports/1/rate").write_text("fast\n")
    ids = gpu_bus_ids()
    ids[2] = "garbage"

    sample = read_host(root, [], gpu_pci_bus_ids=ids, probe=FakeProbe())

    ib, rails = sample.unavailable["ib_ports"], sample.unavailable["rails"]
    assert ib.status is ReadStatus.ERROR and "mlx5_3/1:rate: not a rate: 'fast'" in ib.detail
    assert rails.status is ReadStatus.ERROR and "gpu2" in rails.detail
    assert set(sample.unavailable) == {"ib_ports", "rails"}
    assert len(sample.rails) == 8


class TwoGpuBackend:
    """Minimal GpuBackend: two GPUs of the fixture, one whose PCI address is unknown."""

    class Device:
        def __init__(self, sample: GpuSample) -> None:
            self._sample = sample

        @property
        def index(self) -> int:
            return self._sample.index

        def sample(self) -> GpuSample:
            return self._sample

    def system(self) -> SystemInfo:
        return SystemInfo(gpu_count=2)

    def devices(self) -> list[GpuDevice]:
        ids = gpu_bus_ids()
        return [
            self.Device(GpuSample(index=6, pci_bus_id=ids[6])),
            self.Device(GpuSample(index=7)),
        ]

    def drain_xid_events(self) -> list[XidEvent]:
        return []

    def close(self) -> None:
        pass


def test_host_reader_plugs_into_the_sweep_collector() -> None:
    reader = HostReader(FIXTURE, required_services=[], probe=FakeProbe())

    sample = collect_node("node-a", TwoGpuBackend(), FakeClock(), host_reader=reader)

    assert sample.host is not None
    assert sample.host.rails == {6: "mlx5_11/1"}  # GPU 7 has no address: no rail to map


def test_no_service_is_required_unless_configured() -> None:
    probe = FakeProbe()

    sample = read_host(FIXTURE, probe=probe)

    assert sample.services == {}
    assert probe.asked == []
