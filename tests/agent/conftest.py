"""Fixtures of the agent tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def busy_host_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A policy overlay for checks that read THIS machine's host through psutil (the real host
    code path, with NVML faked): a shared 2-core test box is often loaded past the shipped
    2.0-per-CPU load threshold, which says nothing about the GPUs under test."""
    policy = tmp_path / "busy-host-policy.toml"
    policy.write_text("[host]\nmax_load_per_cpu = 1000.0\n")
    monkeypatch.setenv("GPUFLEET_POLICY", str(policy))
    yield policy
