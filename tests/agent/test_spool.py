"""The on-disk spool: FIFO order, cumulative acks, bounds, numbering, corruption, kill -9."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.link.drop_policy import SpoolLimits
from agent.link.spool import RecordTooLargeError, Spool, SpoolLockedError
from agent.link.spool_file import DB_FILE
from protos.gpufleet.v1 import fleet_pb2


def report(at: float, pad: int = 0) -> fleet_pb2.AgentMessage:
    findings = [fleet_pb2.Finding(check="pad", message="x" * pad)] if pad else []
    return fleet_pb2.AgentMessage(report=fleet_pb2.Report(sampled_at=at, findings=findings))


def xid(code: int) -> fleet_pb2.AgentMessage:
    return fleet_pb2.AgentMessage(event=fleet_pb2.Event(xid=fleet_pb2.XidEvent(xid=code)))


def decoded(spool: Spool, after: int = 0) -> list[tuple[int, fleet_pb2.AgentMessage]]:
    return [(seq, fleet_pb2.AgentMessage.FromString(raw)) for seq, raw in spool.pending(after)]


def test_appends_come_back_in_order_with_their_seq(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        seqs = [spool.append(report(float(i))) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert spool.next_seq == 6 and len(spool) == 5
        items = decoded(spool)
        assert [s for s, _ in items] == seqs
        assert all(m.seq == s for s, m in items)  # the bytes carry the row's seq
        assert [m.report.sampled_at for _, m in items] == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert [s for s, _ in decoded(spool, after=3)] == [4, 5]


def test_ack_is_cumulative_and_idempotent(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(5):
            spool.append(report(float(i)))
        assert spool.ack(3) == 3
        assert [s for s, _ in decoded(spool)] == [4, 5]
        assert spool.ack(2) == 0 and spool.acked_seq == 3
        with pytest.raises(ValueError, match="above every seq"):
            spool.ack(6)
        assert len(spool) == 2


def test_numbering_and_acks_survive_a_restart(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(4):
            spool.append(report(float(i)))
        spool.ack(4)  # everything acknowledged: the spool is empty
    with Spool(tmp_path) as spool:
        assert len(spool) == 0 and spool.acked_seq == 4
        assert spool.append(report(9.0)) == 5  # continues above all it ever issued
    with Spool(tmp_path) as spool:
        assert [s for s, _ in decoded(spool)] == [5]


def test_ephemeral_messages_are_refused_and_change_nothing(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        hello = fleet_pb2.AgentMessage(hello=fleet_pb2.Hello(node="n"))
        tick = fleet_pb2.AgentMessage(
            event=fleet_pb2.Event(progress=fleet_pb2.RankProgress(step=1))
        )
        for msg in (hello, tick, fleet_pb2.AgentMessage()):
            with pytest.raises(ValueError, match="ephemeral"):
                spool.append(msg)
        assert spool.next_seq == 1 and len(spool) == 0


def test_a_message_larger_than_the_record_limit_is_a_clear_error(tmp_path: Path) -> None:
    with Spool(tmp_path, max_record_bytes=1000) as spool:
        with pytest.raises(RecordTooLargeError, match="1000-byte limit"):
            spool.append(report(1.0, pad=2000))
        assert spool.next_seq == 1


def test_full_spool_drops_oldest_reports_and_keeps_events(tmp_path: Path) -> None:
    limits = SpoolLimits(max_records=4, max_bytes=1 << 20)
    with Spool(tmp_path, limits) as spool:
        spool.append(report(1.0))  # 1
        spool.append(xid(79))  # 2
        spool.append(report(3.0))  # 3
        spool.append(xid(48))  # 4
        assert spool.append(report(5.0)) == 5  # drops report 1
        assert spool.append(xid(94)) == 6  # drops report 3
        assert [s for s, _ in decoded(spool)] == [2, 4, 5, 6]
        assert spool.append(xid(95)) == 7  # drops report 5, the last report
        assert spool.append(report(8.0)) == 0  # only events left: the report is refused
        assert spool.next_seq == 8  # a refused record consumes no seq
        kept = decoded(spool)
        assert [m.event.xid.xid for _, m in kept] == [79, 48, 94, 95]
        stats = spool.stats()
        assert (stats.dropped_reports, stats.dropped_events, stats.dropped) == (4, 0, 4)
    with Spool(tmp_path, limits) as spool:  # the counters are persisted
        assert spool.stats().dropped_reports == 4
        spool.append(xid(31))  # events only: the oldest event goes
        assert [m.event.xid.xid for _, m in decoded(spool)] == [48, 94, 95, 31]
        assert spool.stats().dropped_events == 1


def test_byte_bound_holds(tmp_path: Path) -> None:
    limits = SpoolLimits(max_records=1000, max_bytes=5000)
    with Spool(tmp_path, limits) as spool:
        for i in range(50):
            spool.append(report(float(i), pad=400))
            assert spool.stats().bytes <= 5000
        assert spool.stats().dropped_reports > 0
        seqs = [s for s, _ in decoded(spool)]
        assert seqs == list(range(seqs[0], 51))  # the newest ones, contiguous


def test_corrupt_tail_records_are_skipped_counted_and_removed(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(7):
            spool.append(report(float(i)))
    db = sqlite3.connect(tmp_path / DB_FILE)
    db.execute("UPDATE records SET body = X'00FFEE' WHERE seq = 5")  # wrong length and CRC
    db.execute("UPDATE records SET crc = crc + 1 WHERE seq = 6")  # right length, wrong CRC
    db.execute("UPDATE records SET body = 'caf\u00e9' || body WHERE seq = 7")  # now TEXT
    db.commit()
    db.close()
    with Spool(tmp_path) as spool:
        assert [s for s, _ in decoded(spool)] == [1, 2, 3, 4]
        assert spool.stats().corrupt == 3
        assert len(spool) == 4
        assert spool.append(report(8.0)) == 8  # numbering is not reused


def test_records_with_impossible_columns_are_dropped_on_open(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append(report(float(i)))
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        db.execute("UPDATE records SET priority = 7 WHERE seq = 2")
        db.execute("UPDATE meta SET value = 'garbage' WHERE key = 'acked_seq'")
    with Spool(tmp_path) as spool:
        assert [s for s, _ in decoded(spool)] == [1, 3]
        assert spool.stats().corrupt == 1 and spool.acked_seq == 0 and spool.next_seq == 4


def test_an_unreadable_file_is_moved_aside_and_the_spool_keeps_working(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(report(1.0))
    (tmp_path / DB_FILE).write_bytes(b"this is not a database" * 100)
    with Spool(tmp_path) as spool:
        assert spool.stats().corrupt == 1
        assert (tmp_path / (DB_FILE + ".corrupt")).exists()
        seq = spool.append(report(2.0))
        assert [s for s, _ in decoded(spool)] == [seq]


def test_a_damaged_page_is_rebuilt_with_every_intact_record_it_still_yields(
    tmp_path: Path,
) -> None:
    with Spool(tmp_path) as spool:
        for i in range(300):
            spool.append(report(float(i), pad=300))
    path = tmp_path / DB_FILE
    data = bytearray(path.read_bytes())
    page = 4096
    data[20 * page : 21 * page] = b"\xa5" * page  # one page in the middle of the records
    path.write_bytes(bytes(data))
    with Spool(tmp_path) as spool:
        stats = spool.stats()
        assert stats.corrupt >= 1
        items = decoded(spool)
        seqs = [s for s, _ in items]
        assert seqs == sorted(seqs) and set(seqs) <= set(range(1, 301))
        assert len(seqs) >= 260  # only the ~12 records on the damaged page are lost
        assert all(m.report.sampled_at == float(s - 1) for s, m in items)
        assert spool.next_seq > max(seqs, default=0)


def test_rebase_renumbers_pending_records_above_the_controller(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        for i in range(3):
            spool.append(report(float(i)))
        spool.ack(1)
        spool.rebase(101)
        items = decoded(spool)
        assert [s for s, _ in items] == [101, 102]
        assert [m.seq for _, m in items] == [101, 102]
        assert [m.report.sampled_at for _, m in items] == [1.0, 2.0]
        assert spool.next_seq == 103 and spool.acked_seq == 100
        with pytest.raises(ValueError):
            spool.rebase(50)
    with Spool(tmp_path) as spool:
        assert [s for s, _ in decoded(spool)] == [101, 102] and spool.next_seq == 103


def test_discard_counts_a_refused_record(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(report(1.0))
        spool.append(report(2.0))
        spool.discard(1, reason="rejected")
        assert [s for s, _ in decoded(spool)] == [2]
        assert spool.stats().rejected == 1 and spool.oldest_seq() == 2


def test_one_process_per_directory(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(SpoolLockedError, match="in use"):
        Spool(tmp_path)
    spool.close()
    Spool(tmp_path).close()


_CHILD = """
import sys
from agent.link.spool import Spool
from protos.gpufleet.v1 import fleet_pb2
spool = Spool(sys.argv[1], synchronous=sys.argv[2])
for i in range(1, 100000):
    seq = spool.append(fleet_pb2.AgentMessage(report=fleet_pb2.Report(sampled_at=i)))
    print("seq", seq, flush=True)
    if i % 7 == 0:
        spool.ack(seq - 3)
        print("ack", seq - 3, flush=True)
"""


@pytest.mark.timeout(30)
@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_kill_9_loses_nothing_appended_and_resurrects_nothing_acked(
    tmp_path: Path, synchronous: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), synchronous],
        stdout=subprocess.PIPE,
        text=True,
    )
    appended: list[int] = []
    acked = 0
    deadline = time.monotonic() + 20
    try:
        assert child.stdout is not None
        while len(appended) < 60 and time.monotonic() < deadline:
            kind, value = child.stdout.readline().split()
            if kind == "seq":
                appended.append(int(value))
            else:
                acked = int(value)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        if child.stdout is not None:
            child.stdout.close()
    assert len(appended) == 60 and acked > 0
    with Spool(tmp_path) as spool:
        stored = [s for s, _ in spool.pending()]
        assert spool.acked_seq >= acked
        assert all(s > acked for s in stored)  # nothing acknowledged comes back
        assert set(range(spool.acked_seq + 1, max(appended) + 1)) <= set(stored)  # none lost
        assert stored == list(range(stored[0], stored[-1] + 1))  # and no holes
        assert spool.next_seq > max(appended)
