"""The /metrics HTTP endpoint: a thin wrapper over prometheus_client's threaded server."""

from __future__ import annotations

import threading
from types import TracebackType
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry


class MetricsServer:
    """A running endpoint; `close()` (or leaving a `with` block) stops it and frees the port."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self._closed = False

    @property
    def port(self) -> int:
        """The bound port (useful after binding port 0)."""
        return int(self._server.server_port)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop serving, close the socket and join the thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout_s)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_metrics(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0
) -> tuple[MetricsServer, int]:
    """Serve `registry` on http://host:port/metrics in a daemon thread.

    Defaults to loopback and an ephemeral port; pass the address to scrape from elsewhere
    (e.g. "0.0.0.0", "::"). Returns the server and the port actually bound.
    """
    if not host:
        raise ValueError("metrics listen host must not be empty (use 127.0.0.1 or 0.0.0.0)")
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics listen port {port} is outside 0..65535")
    server, thread = start_http_server(port, addr=host, registry=registry)
    running = MetricsServer(server, thread)
    return running, running.port
