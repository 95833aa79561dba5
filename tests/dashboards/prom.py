"""Start a real Prometheus on loopback for a test, and talk to its HTTP API.

Skips (with the install hint) where the `prometheus` binary is absent; CI installs it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

READY_TIMEOUT_S = 10.0


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def need_binary(name: str) -> str:
    """The path of `name`, or skip the test saying how to get it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not on PATH (apt-get install prometheus; CI installs it)")
    return path


class ApiError(RuntimeError):
    """Prometheus answered with an error (e.g. bad_data for a query that does not parse)."""

    def __init__(self, error_type: str, error: str) -> None:
        super().__init__(f"{error_type}: {error}")
        self.error_type = error_type
        self.error = error


def api(base: str, path: str, **params: str) -> Any:
    """GET an API path; the `data` member of a successful answer, ApiError otherwise."""
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read().decode())
    except urllib.error.HTTPError as err:
        body = json.loads(err.read().decode())
    if body.get("status") != "success":
        raise ApiError(str(body.get("errorType")), str(body.get("error")))
    return body["data"]


@contextmanager
def prometheus(workdir: Path, config: str) -> Iterator[str]:
    """Run Prometheus with `config` (YAML text) in `workdir`; yields its base URL.

    Rule files named in the config are resolved against `workdir`. Stopped by PID on exit
    (SIGTERM, then SIGKILL after 10 s).
    """
    binary = need_binary("prometheus")
    (workdir / "prometheus.yml").write_text(config)
    port = free_port()
    log_path = workdir / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _ready(base):
                if proc.poll() is not None:
                    pytest.fail(f"prometheus exited: {log_path.read_text()[-2000:]}")
                if time.monotonic() > deadline:
                    pytest.fail("prometheus not ready in time")
                time.sleep(0.05)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False
