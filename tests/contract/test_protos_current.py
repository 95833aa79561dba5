"""The committed generated code must be exactly what protoc makes from the .proto today."""

from __future__ import annotations

from pathlib import Path

import pytest

from protos import gen


def test_regenerating_changes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    written = gen.generate(tmp_path)
    assert written, "protoc produced nothing"
    for fresh in written:
        committed = gen.REPO_ROOT / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed.name} is not committed: run `make protos`"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed.name} is stale: run `make protos` and commit the result"
        )


def test_generated_code_imports_and_round_trips() -> None:
    from protos.gpufleet.v1 import fleet_pb2

    msg = fleet_pb2.AgentMessage(seq=7)
    msg.report.findings.add(check="xid", severity=fleet_pb2.SEVERITY_CRITICAL, gpu=3)
    back = fleet_pb2.AgentMessage.FromString(msg.SerializeToString())
    assert back.seq == 7
    assert back.WhichOneof("body") == "report"
    assert back.report.findings[0].HasField("gpu")
    assert back.report.findings[0].gpu == 3
