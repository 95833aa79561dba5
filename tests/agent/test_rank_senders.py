"""The agent's standing progress socket takes reports for runs it did not start (Slurm ranks):
validated like any datagram, pinned to the local user that reported for the run first, and a
report from another user for that run refused and logged. Real unix sockets; the other user is a
real forked process that dropped to `nobody`."""

from __future__ import annotations

import grp
import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.ranks.progress import ProgressListener, RankProgress, parse_progress, valid_run_id
from agent.ranks.reporter import ProgressReporter
from agent.ranks.senders import FOREIGN_SENDER, TOO_MANY_RUNS, SenderPins
from tests.agent.test_rank_progress import encode, valid_record, wait_for

NOBODY = 65534


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="gfs-") as path:  # sun_path holds 107 bytes
        yield Path(path)


def send_as(uid: int, path: Path, payload: bytes) -> None:
    """Send one datagram from a forked child running as `uid` (real kernel credentials)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(payload, str(path))
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child could not send"


def test_first_reporter_owns_a_run_and_another_uid_is_refused_once_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pins = SenderPins()
    assert pins.check("run-a", 1000, pid=11) is None and pins.owner("run-a") == 1000
    assert pins.check("run-a", 1000) is None
    with caplog.at_level(logging.WARNING, logger="agent.ranks.senders"):
        assert pins.check("run-a", 0, pid=12) == FOREIGN_SENDER  # root gets no exemption
        assert pins.check("run-a", 0, pid=12) == FOREIGN_SENDER
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "uid 0 (pid 12)" in warnings[0] and "uid 1000" in warnings[0]
    assert pins.check("run-b", 0) is None  # another run is another owner
    assert pins.check("run-a", None) is None  # no credentials on this platform: unchecked


def test_pins_are_bounded_and_forget_only_an_idle_run() -> None:
    clock = [0.0]
    pins = SenderPins(max_runs=2, idle_s=60.0, now=lambda: clock[0])
    pins.check("old", 1)
    pins.check("kept", 2)
    clock[0] = 50.0
    pins.check("old", 1)  # its owner reported again: now "kept" is the longest idle
    assert pins.check("new", 3) == TOO_MANY_RUNS  # "kept" is idle 50 s < 60 s: still live
    clock[0] = 61.0
    assert pins.check("new", 3) is None  # "kept" idle 61 s: it makes room
    assert pins.owner("kept") is None and pins.owner("old") == 1 and pins.owner("new") == 3
    with pytest.raises(ValueError):
        SenderPins(max_runs=0)


def test_a_flood_of_new_run_ids_cannot_push_out_a_live_runs_owner() -> None:
    clock = [0.0]
    pins = SenderPins(max_runs=4096, now=lambda: clock[0])
    assert pins.check("llm-run", 1000) is None
    refused = 0
    for i in range(5000):  # a group member invents run ids, one report each
        clock[0] += 0.001
        refused += pins.check(f"junk-{i}", 666) == TOO_MANY_RUNS
        if i % 1000 == 0:
            assert pins.check("llm-run", 1000) is None  # the real ranks keep reporting
    assert refused == 5000 - 4095 and pins.owner("llm-run") == 1000
    assert pins.check("llm-run", 666) == FOREIGN_SENDER  # the takeover is still refused


@pytest.mark.parametrize("run_id, ok", [
    ("dsv3-slurm", True), ("dsv3 mini/x", True), ("r" * 128, True),
    ("", False), ("r" * 129, False), ("run\u00e9", False), ("a\tb", False), ("\u0440un", False),
])  # fmt: skip
def test_run_ids_are_printable_ascii(run_id: str, ok: bool) -> None:
    assert valid_run_id(run_id) is ok
    payload = encode(valid_record(run_id=run_id))
    if ok:
        assert parse_progress(payload, 0.0).run_id == run_id
    else:
        with pytest.raises(ValueError, match="printable ASCII"):
            parse_progress(payload, 0.0)


def test_a_foreign_process_reports_for_a_run_the_agent_never_started(sock_dir: Path) -> None:
    path = sock_dir / "progress.sock"
    got: list[RankProgress] = []
    script = ("from agent.ranks.reporter import ProgressReporter as R; import sys; "
              "r = R.from_env(); sys.exit(0 if all(r.report(s, 1.5, 0.25, 64) "
              "for s in (1, 2)) else 3)")
    with ProgressListener(path, on_record=got.append, socket_mode=0o660,
                          senders=SenderPins()):
        env = {"PATH": os.environ.get("PATH", ""), "GPUFLEET_PROGRESS_SOCKET": str(path),
               "GPUFLEET_RUN_ID": "slurm-run", "GPUFLEET_ATTEMPT": "3", "RANK": "5",
               "LOCAL_RANK": "1"}
        rank = subprocess.run([sys.executable, "-c", script], env=env, timeout=30,
                              cwd=Path(__file__).resolve().parents[2], check=False)
        assert rank.returncode == 0
        assert wait_for(lambda: len(got) == 2)
        assert (path.stat().st_mode & 0o777) == 0o660
    first = got[0]
    assert (first.run_id, first.attempt, first.rank, first.local_rank) == ("slurm-run", 3, 5, 1)
    assert [r.step for r in got] == [1, 2] and first.loss == 1.5 and first.tokens == 64
    assert first.sender_uid == os.getuid() and first.sender_pid not in (None, os.getpid())


@pytest.mark.skipif(os.geteuid() != 0, reason="sending as another user needs root")
def test_another_user_cannot_feed_a_run_someone_else_reports_for(
    sock_dir: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    path = sock_dir / "progress.sock"
    sock_dir.chmod(0o755)
    group = grp.getgrgid(NOBODY).gr_gid
    with ProgressListener(path, socket_mode=0o660, socket_group=group,
                          senders=SenderPins()) as listener:
        assert path.stat().st_gid == group and (path.stat().st_mode & 0o777) == 0o660
        ProgressReporter(str(path), run_id="victim", rank=0).report(1, 2.0, 0.1, 8)
        assert wait_for(lambda: listener.stats().valid == 1)
        with caplog.at_level(logging.WARNING, logger="agent.ranks.senders"):
            send_as(NOBODY, path, encode(valid_record(run_id="victim", rank=0, step=99)))
            send_as(NOBODY, path, encode(valid_record(run_id="own-run", rank=0, step=7)))
            assert wait_for(lambda: listener.stats().valid == 2)
            assert wait_for(lambda: listener.stats().invalid == 1)
        latest = listener.latest()
        stats = listener.stats()
    assert latest[("victim", 0)].step == 1  # the forged step 99 never landed
    assert latest[("own-run", 0)].sender_uid == NOBODY
    assert stats.invalid_by_reason == {FOREIGN_SENDER: 1}
    assert any(f"uid {NOBODY}" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(os.geteuid() != 0, reason="sending as another user needs root")
def test_a_user_outside_the_sockets_group_cannot_send_at_all(sock_dir: Path) -> None:
    path = sock_dir / "progress.sock"
    sock_dir.chmod(0o755)
    with ProgressListener(path, socket_mode=0o660) as listener:  # root:root 0660
        with pytest.raises(AssertionError, match="could not send"):
            send_as(NOBODY, path, encode(valid_record()))
        assert listener.stats().valid == 0
