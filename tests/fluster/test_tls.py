"""Optional TLS: servers with a certificate made at test time, clients that verify it.

Certificates come from the ``openssl`` command (Debian's ``openssl`` package),
self-signed for 127.0.0.1 and localhost, each its own CA. Signing stays on
under TLS, so the secret is checked as without it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from contextthreads.fluster import (
    ActorClient,
    ActorServer,
    Controller,
    ControllerClient,
    LocalCluster,
    RpcAuthError,
    RpcError,
    TLSConfig,
    WorkerPoolConfig,
)
from contextthreads.fluster._http import SignedServer

from . import tasks
from .pools import make_pool
from .support import SECRET, WAIT, Echo

pytest.importorskip("cloudpickle")


def make_certificate(directory: Path, name: str) -> TLSConfig:
    """Make a self-signed certificate for 127.0.0.1 and localhost; return it as its own CA."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=WAIT,
    )  # fmt: skip
    return TLSConfig(str(cert), str(key), str(cert))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSConfig:
    """The certificate the servers here present, and the CA file that trusts it."""
    return make_certificate(tmp_path_factory.mktemp("tls"), "fluster-test")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> TLSConfig:
    """Another self-signed certificate: a CA the servers here were not signed by."""
    return make_certificate(tmp_path_factory.mktemp("stranger"), "stranger")


@pytest.fixture(scope="module")
def controller(tls: TLSConfig) -> Iterator[Controller]:
    """A controller serving TLS with ``tls``'s certificate."""
    with Controller(SECRET, ssl_context=tls.server_context()) as running:
        yield running


def test_a_tls_controller_serves_clients_that_trust_it(
    controller: Controller, tls: TLSConfig
) -> None:
    """A controller given a certificate serves https://; a client verifying against the CA
    registers and lists endpoints over it."""
    assert controller.address == f"https://127.0.0.1:{controller.port}"
    client = ControllerClient(controller.address, SECRET, ssl_context=tls.client_context())
    endpoint_id = client.register("ns-tls/svc", "https://127.0.0.1:1", "ns-tls")
    assert [e.endpoint_id for e in client.list_endpoints("ns-tls/")] == [endpoint_id]


def test_the_ca_file_may_come_from_the_environment(
    controller: Controller, tls: TLSConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a context of its own, a client trusts the CA file named by FLUSTER_TLS_CA."""
    assert tls.cafile is not None
    monkeypatch.setenv("FLUSTER_TLS_CA", tls.cafile)
    ControllerClient(controller.address, SECRET).ping()


def test_a_server_the_client_does_not_trust_is_refused(
    controller: Controller, stranger: TLSConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client verifying against another CA, or the system's, refuses the server's
    certificate: RpcAuthError, caused by the verification failure."""
    monkeypatch.delenv("FLUSTER_TLS_CA", raising=False)
    for context in (stranger.client_context(), None):
        with pytest.raises(RpcAuthError, match="certificate") as info:
            ControllerClient(controller.address, SECRET, ssl_context=context).ping()
        assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


def test_signing_stays_on_under_tls(controller: Controller, tls: TLSConfig) -> None:
    """Over TLS a client with another secret is still refused (401): RpcAuthError."""
    client = ControllerClient(controller.address, "wrong-secret", ssl_context=tls.client_context())
    with pytest.raises(RpcAuthError, match="refused our request"):
        client.ping()


def test_plain_http_to_a_tls_server_fails_and_the_server_serves_on(
    controller: Controller, tls: TLSConfig
) -> None:
    """A client speaking plain HTTP to a TLS port gets an RpcError, not an answer; the server
    goes on serving TLS clients."""
    plain = controller.address.replace("https://", "http://")
    with pytest.raises(RpcError):
        ControllerClient(plain, SECRET, timeout=WAIT).ping()
    ControllerClient(controller.address, SECRET, ssl_context=tls.client_context()).ping()


def test_a_tls_handshake_that_never_finishes_is_cut_off(tls: TLSConfig) -> None:
    """A connection that never completes its TLS handshake is hung up on after head_timeout."""
    server = SignedServer(
        "127.0.0.1", 0, SECRET, lambda *request: (200, b""), "t", ssl_context=tls.server_context()
    )
    server.head_timeout = 0.5
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            started = time.monotonic()
            assert sock.recv(1) == b""
            assert 0.5 <= time.monotonic() - started < WAIT
    finally:
        server.close()


def test_actor_calls_and_streams_over_tls(tls: TLSConfig) -> None:
    """An ActorServer given a certificate serves calls and streams over https://."""
    echo = Echo()
    with ActorServer(SECRET, ssl_context=tls.server_context()) as server:
        server.register("echoer", echo)
        client = ActorClient(
            server.address, "echoer", secret=SECRET, timeout=WAIT, ssl_context=tls.client_context()
        )
        with contextlib.closing(client.stream("echo")) as channel:
            for body in (b"over tls", os.urandom(100_000)):
                channel.send(body)
                assert channel.recv() == body
        with pytest.raises(AttributeError):
            client.call("nope")
    assert echo.ended.get(timeout=WAIT) == "returned"


def test_a_whole_cluster_over_tls(tls: TLSConfig) -> None:
    """LocalCluster(tls=...) serves its controller and every worker's actor server over TLS
    (the workers are told the files in their environment): a pool's tasks run, each worker
    at an https:// address."""
    with LocalCluster(tls=tls) as cluster:
        assert cluster.address.startswith("https://")
        pool = make_pool(cluster, "job-tls", WorkerPoolConfig(num_workers=2))
        try:
            pool.wait_for_workers(timeout=WAIT)
            squares = [f.result(WAIT) for f in pool.map(tasks.square, range(6))]
            assert squares == [n * n for n in range(6)]
            urls = [d["endpoint_url"] for d in pool.status().worker_details]
            assert all(url.startswith("https://127.0.0.1:") for url in urls)
        finally:
            pool.shutdown(wait=True)
