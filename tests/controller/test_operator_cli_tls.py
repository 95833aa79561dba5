"""The CLI over mutual TLS (certificates made with openssl), and the extension hook."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import typer
from typer.testing import CliRunner

from controller.operator_cli import EXIT_OK, EXIT_UNREACHABLE, get_app, load_extensions
from protos.gpufleet.v1 import fleet_pb2 as pb, fleet_pb2_grpc as pb_grpc

_add_servicer: Callable[[pb_grpc.FleetAdminServicer, grpc.Server], None] = (
    pb_grpc.add_FleetAdminServicer_to_server
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(name: str, subject: str, ext: str, cwd: Path) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)
    (cwd / f"{name}.ext").write_text(ext + "\n")
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext",
        cwd=cwd,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
             "-subj", "/CN=gpufleet-test-ca", cwd=d)  # fmt: skip
    _issue("server", "/CN=controller", "subjectAltName=IP:127.0.0.1", d)
    _issue("client", "/CN=operator:alice", "extendedKeyUsage=clientAuth", d)
    return d


class WhoAmI(pb_grpc.FleetAdminServicer):
    """Answers ListNodes with one node named after the client certificate's CN."""

    def ListNodes(
        self, request: pb.ListNodesRequest, context: grpc.ServicerContext
    ) -> pb.ListNodesResponse:
        (name,) = context.auth_context().get("x509_common_name", [b"?"])
        assert isinstance(name, bytes)
        return pb.ListNodesResponse(nodes=[pb.NodeView(name=name.decode(), state="ready")])


@pytest.fixture
def tls_controller(pki: Path) -> Iterator[str]:
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    _add_servicer(WhoAmI(), server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait(5)


def test_mutual_tls_presents_the_client_certificate(tls_controller: str, pki: Path) -> None:
    result = CliRunner().invoke(
        get_app(),
        ["--controller", tls_controller, "nodes", "--json"],
        env={
            "GPUFLEET_TLS_CA": str(pki / "ca.pem"),
            "GPUFLEET_TLS_CERT": str(pki / "client.pem"),
            "GPUFLEET_TLS_KEY": str(pki / "client.key"),
        },
    )
    assert result.exit_code == EXIT_OK, result.output
    assert [n["name"] for n in json.loads(result.stdout)] == ["operator:alice"]


def test_plaintext_to_a_tls_controller_fails_in_one_line(tls_controller: str) -> None:
    result = CliRunner().invoke(
        get_app(), ["--controller", tls_controller, "--timeout", "5", "nodes"]
    )
    assert result.exit_code == EXIT_UNREACHABLE
    assert len(result.stderr.strip().splitlines()) == 1


def test_extensions_register_their_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gpufleet_test_ext.py").write_text(
        textwrap.dedent(
            """
            import typer

            def register(app: typer.Typer) -> None:
                @app.command("hello")
                def hello() -> None:
                    typer.echo("hello from an extension")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "gpufleet_test_ext", raising=False)
    target = typer.Typer()

    @target.command("noop")
    def noop() -> None:
        """Keeps this a group."""

    loaded = load_extensions(target, ["gpufleet_test_ext", "gpufleet_not_installed_ext"])
    assert loaded == ["gpufleet_test_ext"]
    result = CliRunner().invoke(target, ["hello"])
    assert result.exit_code == 0
    assert result.stdout.strip() == "hello from an extension"
