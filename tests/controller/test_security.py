"""mTLS identity and operator credentials, with certificates made by the openssl CLI."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller.server import Controller, TlsFiles
from controller.server.security import (
    AdminAuth,
    AuthError,
    OperatorTokens,
    bearer_token,
    peer_common_name,
)
from protos.gpufleet.v1 import fleet_pb2, fleet_pb2_grpc
from tests.controller.conftest import RawAgent, hello, report, settings, start_controller

pytestmark = pytest.mark.timeout(60)
OPENSSL = shutil.which("openssl")


def openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN={name}", cwd=d)


def make_leaf(d: Path, ca: str, stem: str, cn: str, *, server: bool = False) -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", f"/CN={cn}", cwd=d)
    ext = d / f"{stem}.ext"
    usage = "serverAuth" if server else "clientAuth"
    san = "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if server else ""
    ext.write_text(f"{san}extendedKeyUsage={usage}\n")
    openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{stem}.pem", "-days", "2", "-extfile", ext.name, cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet CA with controller, node and operator certificates, and a stranger CA."""
    if OPENSSL is None:
        pytest.skip("TLS tests need the openssl command-line tool (not found on PATH)")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_leaf(d, "ca", "controller", "gpufleet-controller", server=True)
    make_leaf(d, "ca", "node-a", "node-a")
    make_leaf(d, "ca", "operator", "operator:alice")
    make_ca(d, "other-ca")
    make_leaf(d, "other-ca", "impostor", "node-a")
    return d


@pytest.fixture
async def tls_controller(pki: Path, db_path: Path) -> AsyncIterator[Controller]:
    cfg = dataclasses.replace(settings(db_path), tls=TlsFiles(
        pki / "controller.pem", pki / "controller.key", pki / "ca.pem"))
    controller = await start_controller(cfg)
    try:
        yield controller
    finally:
        await controller.stop(grace_s=0)


def channel(controller: Controller, pki: Path, stem: str | None) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / f"{stem}.key").read_bytes() if stem else None,
        certificate_chain=(pki / f"{stem}.pem").read_bytes() if stem else None,
    )
    return grpc.aio.secure_channel(controller.address, creds)


async def test_node_identity_comes_from_the_certificate(
    tls_controller: Controller, pki: Path
) -> None:
    async with channel(tls_controller, pki, "node-a") as ch:
        agent = RawAgent(ch)
        welcome = await agent.hello("node-a")
        assert welcome.node == "node-a"
        await agent.send(report(1))
        assert await agent.until_ack(1) == 1
        await agent.close()


async def test_hello_claiming_another_node_is_permission_denied(
    tls_controller: Controller, pki: Path
) -> None:
    async with channel(tls_controller, pki, "node-a") as ch:
        agent = RawAgent(ch)
        await agent.send(hello("node-b"))
        code, details = await agent.status()
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "node-a" in details and "node-b" in details
        survivor = RawAgent(ch)  # the server keeps serving, even on this connection
        assert (await survivor.hello("node-a")).node == "node-a"
        msg = report(1)
        msg.node = "node-b"
        await survivor.send(msg)
        code, _ = await survivor.status()
        assert code == grpc.StatusCode.PERMISSION_DENIED
    assert tls_controller.service is not None
    assert tls_controller.service.state_of("node-b") is None  # never registered


async def test_an_operator_certificate_cannot_act_as_a_node(
    tls_controller: Controller, pki: Path
) -> None:
    async with channel(tls_controller, pki, "operator") as ch:
        agent = RawAgent(ch)
        await agent.send(hello("node-a"))
        code, _ = await agent.status()
        assert code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("stem", [None, "impostor"])
async def test_clients_without_a_fleet_certificate_cannot_connect(
    tls_controller: Controller, pki: Path, stem: str | None
) -> None:
    if stem == "impostor":  # signed by another CA: present its chain with our CA as root
        creds = grpc.ssl_channel_credentials(
            root_certificates=(pki / "ca.pem").read_bytes(),
            private_key=(pki / "impostor.key").read_bytes(),
            certificate_chain=(pki / "impostor.pem").read_bytes())
        ch = grpc.aio.secure_channel(tls_controller.address, creds)
    else:
        ch = channel(tls_controller, pki, None)
    async with ch:
        stub: Any = fleet_pb2_grpc.FleetAdminStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ListNodes(fleet_pb2.ListNodesRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_admin_over_tls_without_tokens_needs_an_operator_certificate(
    tls_controller: Controller, pki: Path
) -> None:
    async with channel(tls_controller, pki, "node-a") as ch:
        stub: Any = fleet_pb2_grpc.FleetAdminStub(ch)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Drain(fleet_pb2.DrainRequest(node="node-a"))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    async with channel(tls_controller, pki, "operator") as ch:
        stub = fleet_pb2_grpc.FleetAdminStub(ch)  # type: ignore[no-untyped-call]
        assert list((await stub.ListNodes(fleet_pb2.ListNodesRequest())).nodes) == []


# ---------------------------------------------------------------- pure parts


def test_token_file_parsing_reports_every_problem() -> None:
    with pytest.raises(ValueError) as err:
        OperatorTokens.parse("alice short\nbob a-long-enough-token-1\nbob a-long-enough-token-2\n"
                             "too many fields here\n", "tokens")
    text = str(err.value)
    assert "tokens:1" in text and "shorter than 16" in text
    assert "tokens:3" in text and "appears twice" in text
    assert "tokens:4" in text
    with pytest.raises(ValueError, match="no tokens"):
        OperatorTokens.parse("# only a comment\n\n")


def test_tokens_map_to_their_operator() -> None:
    tokens = OperatorTokens.parse("alice token-of-alice-0001\ntoken-without-a-name-02\n")
    assert tokens.operator_for("token-of-alice-0001") == "alice"
    assert tokens.operator_for("token-without-a-name-02") == "token2"
    assert tokens.operator_for("token-of-alice-0002") is None
    assert tokens.operator_for("") is None


def test_world_readable_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("alice token-of-alice-0001\n")
    os.chmod(path, 0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        OperatorTokens.load(path)
    os.chmod(path, 0o600)
    assert OperatorTokens.load(path).operator_for("token-of-alice-0001") == "alice"


@pytest.mark.parametrize(("metadata", "token"), [
    ((("authorization", "Bearer abc"),), "abc"),
    ((("Authorization", "bearer  abc "),), "abc"),
    ((("authorization", "Basic abc"),), None),
    ((("authorization", "Bearer "),), None),
    ((("x-other", "Bearer abc"),), None),
    ((("authorization", b"Bearer abc"),), "abc"),
])
def test_bearer_token_parsing(metadata: tuple[tuple[str, str | bytes], ...],
                              token: str | None) -> None:
    assert bearer_token(metadata) == token


def test_admin_auth_rules() -> None:
    tokens = OperatorTokens.parse("alice token-of-alice-0001\n")
    with_tokens = AdminAuth(tokens, tls=False)
    assert with_tokens.authenticate((("authorization", "Bearer token-of-alice-0001"),),
                                    {}) == "operator:alice"
    with pytest.raises(AuthError) as err:
        with_tokens.authenticate((), {"x509_common_name": [b"operator:bob"]})
    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED  # a token file means tokens
    assert AdminAuth(None, tls=False).authenticate((), {}) == "operator:local"
    tls_only = AdminAuth(None, tls=True)
    assert tls_only.authenticate((), {"x509_common_name": [b"operator:bob"]}) == "operator:bob"
    with pytest.raises(AuthError):
        tls_only.authenticate((), {"x509_common_name": [b"node-a"]})
    assert peer_common_name({}) is None
