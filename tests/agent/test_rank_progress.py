"""Rank progress: the rank-side reporter and the agent-side listener, over real unix sockets."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.ranks.progress import (
    MAX_LATEST,
    InvalidProgress,
    ProgressListener,
    ProgressListenerError,
    RankProgress,
    parse_progress,
)
from agent.ranks.reporter import (
    ENV_ATTEMPT,
    ENV_RUN_ID,
    ENV_SOCKET,
    MAX_DATAGRAM_BYTES,
    ProgressReporter,
    ReporterConfigError,
)
from gpufleet_common.clock import FakeClock

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # tmp_path can exceed the 107-byte limit of unix socket paths; mkdtemp stays short.
    path = Path(tempfile.mkdtemp(prefix="gfp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def valid_record(**overrides: object) -> dict[str, object]:
    record: dict[str, object] = {
        "v": 1,
        "run_id": "ds-v3",
        "attempt": 0,
        "rank": 1,
        "local_rank": 1,
        "step": 7,
        "loss": 2.5,
        "step_time_s": 0.03,
        "tokens": 128,
        "pid": 4242,
        "ts": 1_700_000_000.0,
    }
    record.update(overrides)
    return record


def encode(record: dict[str, object]) -> bytes:
    return json.dumps(record).encode()


def env_for(path: Path, **extra: str) -> dict[str, str]:
    env = {ENV_SOCKET: str(path), ENV_RUN_ID: "run-a", ENV_ATTEMPT: "2", "RANK": "3"}
    env["LOCAL_RANK"] = "1"
    env.update(extra)
    return env


def test_report_reaches_listener_with_identity_and_values(sock_dir: Path) -> None:
    path = sock_dir / "progress.sock"
    seen: list[RankProgress] = []
    with ProgressListener(path, on_record=seen.append) as listener:
        with ProgressReporter.from_env(env_for(path)) as reporter:
            assert reporter.enabled
            for step in (1, 2, 3):
                assert reporter.report(step, 1.0 / step, 0.02 * step, 64 * step)
        assert wait_for(lambda: len(seen) == 3)
        latest = listener.latest()
    assert list(latest) == [("run-a", 3)]
    last = latest[("run-a", 3)]
    assert (last.attempt, last.rank, last.local_rank, last.step) == (2, 3, 1, 3)
    assert last.loss == 1.0 / 3  # exact: JSON carries the repr of the float
    if sys.platform == "linux":
        assert last.sender_pid == os.getpid()
    assert (last.step_time_s, last.tokens, last.pid) == (0.02 * 3, 192, os.getpid())
    assert [r.step for r in seen] == [1, 2, 3]
    assert abs(last.ts - time.time()) < 60
    assert reporter.sent == 3 and reporter.dropped == 0


def test_reporter_in_another_process_reports_its_own_pid(sock_dir: Path) -> None:
    path = sock_dir / "p.sock"
    code = (
        "from agent.ranks.reporter import ProgressReporter\n"
        "r = ProgressReporter.from_env()\n"
        "assert r.report(5, 0.25, 0.1, 10), r.dropped\n"
    )
    env = {**os.environ, **env_for(path, RANK="0", LOCAL_RANK="0")}
    with ProgressListener(path) as listener:
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, timeout=30, check=True
        )
        assert proc.returncode == 0
        assert wait_for(lambda: ("run-a", 0) in listener.latest())
        record = listener.latest()[("run-a", 0)]
    assert record.step == 5 and record.pid != os.getpid()
    if sys.platform == "linux":  # the kernel vouches for the sender; the rank's word is extra
        assert (record.sender_pid, record.sender_uid) == (record.pid, os.getuid())


def test_reporter_imports_nothing_but_the_stdlib() -> None:
    code = (
        "import sys\n"
        "import agent.ranks.reporter\n"
        "mods = {m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'grpc', 'agent')}\n"
        "print(sorted(mods))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        timeout=30,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert out.strip() == "['agent', 'agent.ranks', 'agent.ranks.reporter']"


def test_reporter_without_socket_is_a_noop() -> None:
    reporter = ProgressReporter.from_env({})
    assert not reporter.enabled
    assert reporter.report(1, 1.0, 0.1, 1) is False
    assert reporter.sent == 0 and reporter.dropped == 0


def test_reporter_drops_fast_when_agent_is_away_or_gone(sock_dir: Path) -> None:
    absent = ProgressReporter(str(sock_dir / "absent.sock"))
    stale_path = sock_dir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(stale_path))
    stale.close()  # the file stays, nobody is bound: sends are refused
    gone = ProgressReporter(str(stale_path))
    start = time.monotonic()
    for step in range(50):
        assert absent.report(step, 1.0, 0.1, 1) is False
        assert gone.report(step, 1.0, 0.1, 1) is False
    assert time.monotonic() - start < 1.0
    assert absent.dropped == 50 and gone.dropped == 50


def test_reporter_never_blocks_when_the_agent_does_not_read(sock_dir: Path) -> None:
    path = sock_dir / "slow.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(path))  # bound but never read: its queue fills up
    try:
        reporter = ProgressReporter(str(path), run_id="r")
        start = time.monotonic()
        results = [reporter.report(i, 1.0, 0.1, 1) for i in range(5000)]
        elapsed = time.monotonic() - start
    finally:
        sink.close()
    assert elapsed < 5.0
    assert any(results) and not all(results)
    assert reporter.sent + reporter.dropped == 5000 and reporter.dropped > 0


def test_reporter_rejects_malformed_environment() -> None:
    with pytest.raises(ReporterConfigError, match="GPUFLEET_ATTEMPT"):
        ProgressReporter.from_env({ENV_SOCKET: "x", ENV_ATTEMPT: "two"})
    with pytest.raises(ReporterConfigError, match="RANK"):
        ProgressReporter.from_env({ENV_SOCKET: "x", "RANK": "-1"})
    with pytest.raises(ReporterConfigError, match="run id"):
        ProgressReporter.from_env({ENV_SOCKET: "x", ENV_RUN_ID: "r" * 129})


def test_non_finite_loss_is_sent_as_null(sock_dir: Path) -> None:
    path = sock_dir / "nan.sock"
    with ProgressListener(path) as listener:
        reporter = ProgressReporter(str(path), run_id="r", rank=0)
        assert reporter.report(1, float("nan"), 0.1, 1)
        assert wait_for(lambda: ("r", 0) in listener.latest())
        assert listener.latest()[("r", 0)].loss is None
        assert listener.stats().invalid == 0


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe not utf8", "bad_json"),
        (b"{not json", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'{"v": 1, "run_id": "r", "loss": NaN}', "bad_json"),
        (encode({k: v for k, v in valid_record().items() if k != "step"}), "missing_field"),
        (encode(valid_record(v=2)), "bad_version"),
        (encode(valid_record(v=True)), "bad_version"),
        (encode(valid_record(rank=True)), "bad_field"),
        (encode(valid_record(step=-1)), "bad_field"),
        (encode(valid_record(step="7")), "bad_field"),
        (encode(valid_record(tokens=2**60)), "bad_field"),
        (encode(valid_record(pid=0)), "bad_field"),
        (encode(valid_record(step_time_s=-0.5)), "bad_field"),
        (encode(valid_record(loss="low")), "bad_field"),
        (encode(valid_record(run_id="a\nb")), "bad_field"),
        (encode(valid_record(run_id=7)), "bad_field"),
        (b" " * (MAX_DATAGRAM_BYTES + 1), "too_large"),
    ],
)
def test_parse_rejects_bad_datagrams(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidProgress) as info:
        parse_progress(payload, 0.0)
    assert info.value.reason == reason


def test_parse_accepts_integral_numbers_and_ignores_unknown_keys() -> None:
    record = parse_progress(encode(valid_record(loss=3, step_time_s=1, extra="x")), 12.5)
    assert record.loss == 3.0 and isinstance(record.loss, float)
    assert record.step_time_s == 1.0 and record.received_at == 12.5


def test_listener_counts_bad_datagrams_and_keeps_receiving(sock_dir: Path) -> None:
    path = sock_dir / "bad.sock"
    bad = [b"garbage", b"[]", encode(valid_record(rank=-3)), b"x" * (MAX_DATAGRAM_BYTES + 500)]
    with ProgressListener(path) as listener:
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for payload in bad:
                sender.sendto(payload, str(path))
            sender.sendto(encode(valid_record()), str(path))
        finally:
            sender.close()
        assert wait_for(lambda: listener.stats().valid == 1)
        stats = listener.stats()
        assert listener.running
    assert stats.invalid == 4
    assert stats.invalid_by_reason == {"bad_json": 2, "bad_field": 1, "too_large": 1}
    assert listener.latest()[("ds-v3", 1)].step == 7


def test_latest_is_bounded_whatever_run_ids_a_sender_invents(sock_dir: Path) -> None:
    with ProgressListener(sock_dir / "b.sock", history=1) as listener:
        listener.feed(encode(valid_record(run_id="real", rank=0, step=1)))
        for i in range(MAX_LATEST + 100):
            listener.feed(encode(valid_record(run_id=f"junk-{i}", rank=0)))
            if i % 4096 == 0:
                listener.feed(encode(valid_record(run_id="real", rank=0, step=2 + i)))
        latest = listener.latest()
    assert len(latest) == MAX_LATEST
    assert ("real", 0) in latest and ("junk-0", 0) not in latest  # the silent go first


def test_latest_prefers_newer_attempts_and_history_is_bounded(sock_dir: Path) -> None:
    clock = FakeClock()
    with ProgressListener(sock_dir / "h.sock", history=3, clock=clock) as listener:
        listener.feed(encode(valid_record(attempt=1, step=20)))
        clock.advance(1.0)
        listener.feed(encode(valid_record(attempt=0, step=25)))  # a straggler of attempt 0
        assert listener.latest()[("ds-v3", 1)].step == 20
        listener.feed(encode(valid_record(attempt=1, step=21)))
        listener.feed(encode(valid_record(attempt=2, step=10, rank=0)))
        latest = listener.latest()
        recent = listener.recent()
    assert latest[("ds-v3", 1)].step == 21
    assert latest[("ds-v3", 0)].attempt == 2
    assert [r.step for r in recent] == [25, 21, 10]
    assert recent[0].received_at == clock.monotonic() and recent[0].sender_pid is None
    assert [r.step for r in listener.recent(limit=1)] == [10]
    assert listener.recent(limit=0) == []


def test_callback_errors_are_counted_not_fatal(sock_dir: Path) -> None:
    def explode(_record: RankProgress) -> None:
        raise RuntimeError("callback bug")

    path = sock_dir / "cb.sock"
    with ProgressListener(path, on_record=explode) as listener:
        reporter = ProgressReporter(str(path), run_id="r")
        reporter.report(1, 1.0, 0.1, 1)
        reporter.report(2, 1.0, 0.1, 1)
        assert wait_for(lambda: listener.stats().callback_errors == 2)
        assert listener.running
        assert listener.latest()[("r", 0)].step == 2


def test_stop_is_bounded_and_releases_the_path(sock_dir: Path) -> None:
    path = sock_dir / "stop.sock"
    listener = ProgressListener(path, poll_interval_s=0.05)
    assert path.exists() and (path.stat().st_mode & 0o777) == 0o600
    start = time.monotonic()
    assert listener.stop(timeout_s=1.0)
    assert time.monotonic() - start < 1.0
    assert not listener.running and not path.exists()
    assert ProgressReporter(str(path)).report(1, 1.0, 0.1, 1) is False


def test_bind_refuses_live_socket_and_foreign_file_but_reclaims_stale(sock_dir: Path) -> None:
    path = sock_dir / "busy.sock"
    with ProgressListener(path), pytest.raises(ProgressListenerError, match="another listener"):
        ProgressListener(path)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(path))
    stale.close()
    with ProgressListener(path) as listener:
        assert listener.running
    foreign = sock_dir / "notes.txt"
    foreign.write_text("keep me")
    with pytest.raises(ProgressListenerError, match="not a socket"):
        ProgressListener(foreign)
    assert foreign.read_text() == "keep me"
    with pytest.raises(ProgressListenerError, match="longer than"):
        ProgressListener(sock_dir / ("x" * 120))
