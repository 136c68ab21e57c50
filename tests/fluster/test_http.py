"""Signed HTTP: unsigned and wrongly signed requests get 401 before anything is unpickled.

Every server (the controller, actor servers) is a ``SignedServer``; its
handler also writes the server half of the stream handshake.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import pickle
import socket
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator

import pytest

from contextthreads.fluster import (
    ActorClient,
    ActorServer,
    Controller,
    ControllerClient,
    RpcAuthError,
    RpcProtocolError,
    _pickle,
)
from contextthreads.fluster._stream import NONCE_HEADER, NONCE_SIZE, accept_signature
from contextthreads.fluster._wire import SIGNATURE_HEADER, sign, verify
from contextthreads.fluster._wire import STREAM_PROTOCOL as PROTOCOL

from .support import SECRET, WAIT, Echo, LogWatcher, Tripwire, frame

pytest.importorskip("cloudpickle")

STREAM_PATH = "/stream"


class Adder:
    """An actor with one method, to show a server still serves signed calls."""

    def add(self, a: int, b: int) -> int:
        """Return a + b."""
        return a + b


@pytest.fixture(scope="module")
def controller() -> Iterator[Controller]:
    """A controller serving on a free port for the whole module."""
    with Controller(SECRET) as running:
        yield running


@pytest.fixture(scope="module")
def actor_server() -> Iterator[ActorServer]:
    """An ActorServer hosting an Adder under the name "calc"."""
    with ActorServer(SECRET) as server:
        server.register("calc", Adder())
        yield server


def raw_request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("target", ["controller", "actor"])
def test_unsigned_and_garbage_requests_get_401(
    target: str,
    controller: Controller,
    actor_server: ActorServer,
    tmp_path: Path,
) -> None:
    """Every path and method, unsigned or wrongly signed, gets 401 before any unpickling,
    and the server keeps serving signed requests afterwards.
    """
    url = controller.address if target == "controller" else actor_server.address
    tripwire = pickle.dumps(Tripwire(str(tmp_path / "unpickled")))
    cases = [
        ("POST", "/call", tripwire, {}),
        ("POST", "/call", tripwire, {SIGNATURE_HEADER: sign("wrong-secret", tripwire)}),
        ("POST", "/register", b'{"op": "register"}', {SIGNATURE_HEADER: "0" * 64}),
        ("POST", "/list", b"\x00\xffgarbage", {SIGNATURE_HEADER: "not-hex-at-all"}),
        ("GET", "/", b"", {}),
        ("PUT", "/anything/at/all?x=1", b"junk", {}),
        ("BREW", "/coffee", b"", {}),
        ("POST", "/call", tripwire, {SIGNATURE_HEADER: sign(SECRET, b"other body")}),
    ]
    for method, path, body, headers in cases:
        status, _ = raw_request(url, method, path, body, headers)
        assert status == 401, (method, path, headers)
    # Not even HTTP: the server answers or hangs up, and lives on.
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT) as raw:
        raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        raw.recv(1024)
    assert not (tmp_path / "unpickled").exists()
    if target == "controller":
        ControllerClient(url, SECRET).ping()
    else:
        assert ActorClient(url, "calc", secret=SECRET).call("add", 4, 5) == 9


def test_reply_signed_with_another_secret_is_rejected(controller: Controller) -> None:
    """A client refuses a reply not signed with its secret, even a 200 one."""
    with Controller("impostor-secret") as impostor:
        body = json.dumps({"op": "ping"}).encode()
        status, _ = raw_request(
            impostor.address,
            "POST",
            "/ping",
            body,
            {SIGNATURE_HEADER: sign("impostor-secret", body)},
        )
        assert status == 200
        with pytest.raises(RpcAuthError):
            ControllerClient(impostor.address, SECRET).ping()


# -- stream handshakes ---------------------------------------------------------


def stream_request_head(address: str, body: bytes, signature: str | None) -> bytes:
    """Return the head of a stream upgrade request for ``body``, as connect() writes it."""
    netloc = urllib.parse.urlsplit(address).netloc
    lines = [
        f"POST {STREAM_PATH} HTTP/1.1",
        f"Host: {netloc}",
        f"Content-Length: {len(body)}",
        "Connection: Upgrade",
        f"Upgrade: {PROTOCOL}",
    ]
    if signature is not None:
        lines.append(f"{SIGNATURE_HEADER}: {signature}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_server_signs_its_acceptance_and_drops_a_stream_on_a_forged_frame(
    echo_server: tuple[ActorServer, Echo], watch_log: Callable[[str], LogWatcher]
) -> None:
    """Done by hand, the handshake gets a 101 carrying a fresh nonce and the secret's signature
    over both nonces. A forged frame then ends the stream: the server logs it and hangs up,
    and goes on serving other streams."""
    server, echo = echo_server
    dropped = watch_log("failed its signature check")
    client_nonce = os.urandom(NONCE_SIZE)
    body = client_nonce + _pickle.dumps(("echoer", "echo"))
    parts = urllib.parse.urlsplit(server.address)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=WAIT) as sock:
        sock.sendall(stream_request_head(server.address, body, sign(SECRET, body)) + body)
        with sock.makefile("rb") as reader:
            status_line = reader.readline(65537)
            headers = http.client.parse_headers(reader)
            assert status_line.split()[:2] == [b"HTTP/1.0", b"101"]
            assert headers["Upgrade"] == PROTOCOL
            server_nonce = bytes.fromhex(headers[NONCE_HEADER])
            assert len(server_nonce) == NONCE_SIZE
            assert server_nonce != client_nonce
            assert headers[SIGNATURE_HEADER] == accept_signature(SECRET, client_nonce, server_nonce)
            sock.sendall(frame(hashlib.sha256(b"not the session key").digest(), b"C", 0, b"forged"))
            assert reader.read(1) == b""
    assert dropped.seen.wait(WAIT)
    assert echo.ended.get(timeout=WAIT) == "RpcAuthError"
    client = ActorClient(server.address, "echoer", secret=SECRET, timeout=WAIT)
    with contextlib.closing(client.stream("echo")) as channel:
        channel.send(b"still serving")
        assert channel.recv() == b"still serving"


def test_refused_stream_requests(echo_server: tuple[ActorServer, Echo], tmp_path: Path) -> None:
    """Unsigned or wrongly signed stream requests get 401 before anything is unpickled; signed
    but unusable ones (no nonce, not POST, wrong path, unreadable body) get a signed 4xx."""
    server, echo = echo_server
    nonce = os.urandom(NONCE_SIZE)
    tripwire = nonce + pickle.dumps(Tripwire(str(tmp_path / "unpickled")))
    good = nonce + pickle.dumps(("echoer", "echo"))
    cases: list[tuple[str, str, bytes, str | None, int]] = [
        ("POST", STREAM_PATH, tripwire, None, 401),
        ("POST", STREAM_PATH, tripwire, sign("wrong-secret", tripwire), 401),
        ("POST", STREAM_PATH, tripwire, sign(SECRET, good), 401),
        ("POST", STREAM_PATH, b"short", sign(SECRET, b"short"), 400),
        ("GET", STREAM_PATH, good, sign(SECRET, good), 404),
        ("POST", "/call", good, sign(SECRET, good), 404),
        ("POST", STREAM_PATH, nonce + b"not a pickle", sign(SECRET, nonce + b"not a pickle"), 404),
    ]
    parts = urllib.parse.urlsplit(server.address)
    assert parts.hostname is not None
    assert parts.port is not None
    for method, path, body, signature, expected in cases:
        headers = {"Connection": "Upgrade", "Upgrade": PROTOCOL}
        if signature is not None:
            headers[SIGNATURE_HEADER] = signature
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=WAIT)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            reply = response.read()
        finally:
            connection.close()
        assert response.status == expected, (method, path, signature)
        if expected != 401:
            assert verify(SECRET, reply, response.getheader(SIGNATURE_HEADER))
    assert not (tmp_path / "unpickled").exists()
    assert echo.ended.empty()


def test_controller_has_no_streams() -> None:
    """A Controller serves no streams: a signed stream request gets a 404, RpcProtocolError."""
    with Controller(SECRET) as controller:
        client = ActorClient(controller.address, "anything", secret=SECRET, timeout=WAIT)
        with pytest.raises(RpcProtocolError, match="404"):
            client.stream("echo")
