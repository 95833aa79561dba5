"""THE crash test: kill -9 the real controller process mid-stream, restart it on the same
database, replay everything not acknowledged: every acked seq is stored, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.controller.conftest import RawAgent, report

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]
NODES = ("crash-a", "crash-b", "crash-c", "crash-d")
TOTAL = 1500  # reports per node


def start(db: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller", "serve", "--listen", "127.0.0.1:0", "--db", str(db),
         "--insecure", "--ingest-linger-ms", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"controller did not start: {line!r}")
    return proc, line.split()[-1]


class Node:
    """An agent's view: what it sent, what the controller acked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.acked = 0
        self.sent = 0

    async def stream(self, address: str, upto: int, *, kill_at: asyncio.Event | None = None,
                     kill_after_acks: int = 0) -> None:
        """Replay everything not acked, then send up to `upto`, until acked or the link dies."""
        async with grpc.aio.insecure_channel(address) as channel:
            agent = RawAgent(channel)
            try:
                welcome = await agent.hello(self.name, next_seq=self.acked + 1)
                assert welcome.last_stored_seq >= self.acked, "an acked report was lost"
                self.acked = max(self.acked, welcome.last_stored_seq)

                async def reader() -> None:
                    while self.acked < upto:
                        msg = await agent.read(timeout=30)
                        if msg.WhichOneof("body") == "ack":
                            assert msg.ack.seq <= self.sent, "acked a seq never sent"
                            self.acked = max(self.acked, msg.ack.seq)
                            if kill_at is not None and self.acked >= kill_after_acks:
                                kill_at.set()

                reading = asyncio.create_task(reader())
                for seq in range(self.acked + 1, upto + 1):  # the spool: everything unacked
                    await agent.send(report(seq))
                    self.sent = max(self.sent, seq)
                    if seq % 50 == 0:
                        await asyncio.sleep(0)
                await reading
                await agent.call.done_writing()
            except (grpc.aio.AioRpcError, EOFError, asyncio.CancelledError):
                return


def stored(db: Path) -> dict[str, list[int]]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        out: dict[str, list[int]] = {}
        for node, seq in conn.execute("SELECT node, seq FROM reports ORDER BY node, seq"):
            out.setdefault(node, []).append(seq)
        return out
    finally:
        conn.close()


async def test_kill_9_mid_stream_loses_nothing_acked_and_duplicates_nothing(
    tmp_path: Path,
) -> None:
    db = tmp_path / "fleet.db"
    nodes = [Node(n) for n in NODES]
    proc, address = start(db)
    try:
        kill_at = asyncio.Event()
        streams = [asyncio.create_task(n.stream(address, TOTAL, kill_at=kill_at,
                                                kill_after_acks=TOTAL // 3)) for n in nodes]
        await asyncio.wait_for(kill_at.wait(), 60)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: senders are still writing
        proc.wait(timeout=10)
        await asyncio.wait_for(asyncio.gather(*streams), 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    acked_before = {n.name: n.acked for n in nodes}
    assert any(n.sent > n.acked for n in nodes), "the kill should leave unacked reports"
    assert all(0 < acked < TOTAL for acked in acked_before.values())
    after_crash = stored(db)
    for node in nodes:
        seqs = after_crash.get(node.name, [])
        assert len(seqs) == len(set(seqs))
        assert set(range(1, node.acked + 1)) <= set(seqs), f"{node.name}: acked but not stored"

    proc, address = start(db)
    try:
        await asyncio.wait_for(asyncio.gather(*(n.stream(address, TOTAL) for n in nodes)), 60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert proc.returncode == 0
    final = stored(db)
    for node in nodes:
        assert node.acked == TOTAL, f"{node.name} acked only {node.acked}"
        assert final[node.name] == list(range(1, TOTAL + 1)), f"{node.name}: lost or duplicated"
