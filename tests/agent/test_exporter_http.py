"""The /metrics endpoint: real HTTP on loopback, port 0, clean shutdown."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from agent.exporter import serve_metrics
from tests.agent.test_exporter import Exporter, hgx_report


def get(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, response.headers["Content-Type"], response.read().decode()


def test_serves_the_latest_report_and_stops_cleanly() -> None:
    exp = Exporter()
    server, port = serve_metrics(exp.registry, "127.0.0.1", 0)
    try:
        assert port > 0 and port == server.port
        _, ctype, before = get(port)
        assert ctype.startswith("text/plain") and "DCGM_FI_DEV_GPU_TEMP{" not in before

        exp.publish(hgx_report())
        status, _, after = get(port)
        assert status == 200
        assert 'DCGM_FI_DEV_GPU_TEMP{DCGM_FI_DRIVER_VERSION="570.124.06"' in after
    finally:
        server.close()
    server.close()  # idempotent

    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_two_endpoints_get_distinct_ephemeral_ports() -> None:
    registry = CollectorRegistry()
    with serve_metrics(registry)[0] as a, serve_metrics(registry)[0] as b:
        assert a.port != b.port
        assert get(a.port)[0] == get(b.port)[0] == 200


@pytest.mark.parametrize(("host", "port"), [("", 0), ("127.0.0.1", -1), ("127.0.0.1", 70000)])
def test_bad_listen_address_is_refused(host: str, port: int) -> None:
    with pytest.raises(ValueError):
        serve_metrics(CollectorRegistry(), host, port)


def test_a_taken_port_is_an_error_not_a_silent_success() -> None:
    with serve_metrics(CollectorRegistry())[0] as first, pytest.raises(OSError):
        serve_metrics(CollectorRegistry(), "127.0.0.1", first.port)
