"""ControllerLink over mutual TLS, with a throwaway CA made by the openssl command line."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from agent.link import ControllerLink, Spool, TlsConfig
from protos.gpufleet.v1 import fleet_pb2_grpc
from tests.agent.test_link_client import FAST, IDENTITY, FakeController, eventually, report

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command"),
]

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _ca(d: Path, name: str) -> None:
    _openssl(d, "req", "-x509", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.pem",
             "-days", "1", "-subj", f"/CN={name}")  # fmt: skip


def _leaf(d: Path, name: str, cn: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    _openssl(d, "req", *_EC, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
    _openssl(d, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other")
    _leaf(d, "server", "controller", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _leaf(d, "client", "node-a", "extendedKeyUsage=clientAuth\n")
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key", d / "other.pem")  # fmt: skip


@pytest.fixture
async def tls_controller(pki: Pki) -> AsyncIterator[tuple[FakeController, str]]:
    fake = FakeController()
    server = grpc.aio.server()
    fleet_pb2_grpc.add_AgentLinkServicer_to_server(fake, server)  # type: ignore[no-untyped-call]
    credentials = grpc.ssl_server_credentials(
        [(pki.server_key.read_bytes(), pki.server_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    try:
        yield fake, f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_reports_flow_over_mutual_tls(
    tmp_path: Path, pki: Pki, tls_controller: tuple[FakeController, str]
) -> None:
    fake, target = tls_controller
    tls = TlsConfig.from_files(pki.ca, pki.client_cert, pki.client_key)
    spool = Spool(tmp_path)
    link = ControllerLink(target, spool, IDENTITY, tls=tls, config=FAST)
    link.start()
    try:
        link.submit_report(report(1.0))
        await eventually(lambda: len(spool) == 0, "the report acked over TLS")
        assert sorted(fake.stored) == [1] and link.state().connected
    finally:
        assert await asyncio.to_thread(link.close)
        spool.close()


@pytest.mark.parametrize("case", ["no client certificate", "controller signed by another CA"])
async def test_tls_failures_keep_everything_spooled(
    tmp_path: Path, pki: Pki, tls_controller: tuple[FakeController, str], case: str
) -> None:
    fake, target = tls_controller
    if case == "no client certificate":
        tls = TlsConfig.from_files(pki.ca)
    else:
        tls = TlsConfig.from_files(pki.other_ca, pki.client_cert, pki.client_key)
    spool = Spool(tmp_path)
    link = ControllerLink(target, spool, IDENTITY, tls=tls, config=FAST)
    link.start()
    try:
        link.submit_report(report(1.0))
        await eventually(lambda: link.state().reconnects >= 2, "failed attempts")
        assert not fake.hellos and len(spool) == 1 and not link.state().connected
    finally:
        assert await asyncio.to_thread(link.close)
        spool.close()


def test_a_certificate_without_its_key_is_refused(pki: Pki) -> None:
    with pytest.raises(ValueError, match="needs its key"):
        TlsConfig.from_files(pki.ca, cert=pki.client_cert)
