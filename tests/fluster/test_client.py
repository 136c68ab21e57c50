"""The client half of signed HTTP, against fake servers: what a call accepts, and for how long.

A fake server (``fakes``) answers as told: signed for another request or
with another secret, malformed, or a byte at a time.
"""

from __future__ import annotations

import io
import select
import socket
import time
from typing import Callable, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextthreads.fluster import (
    ActorClient,
    ControllerClient,
    RpcAuthError,
    RpcError,
    RpcProtocolError,
    RpcTimeoutError,
)
from contextthreads.fluster._client import post
from contextthreads.fluster._wire import SIGNATURE_HEADER, STREAM_PROTOCOL, reply_signature

from .fakes import Answer, FakeServer, Request, answer_bytes, reply_with
from .support import SECRET, WAIT

pytest.importorskip("cloudpickle")


def signed_answer(secret: str, nonce_of: Callable[[Request], bytes], body: bytes) -> Answer:
    """Return an answer: 200 with ``body``, signed with ``secret`` for the nonce ``nonce_of``
    picks from the request."""

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        signature = reply_signature(secret, nonce_of(request), 200, body)
        headers = {"Content-Length": str(len(body)), SIGNATURE_HEADER: signature}
        conn.sendall(answer_bytes("HTTP/1.0 200 OK", headers, body))

    return answer


def test_a_call_is_signed_for_the_server_it_names() -> None:
    """post() signs its request, body included, for the host:port it connects to, and returns
    the body of a reply signed for that request."""
    with FakeServer(signed_answer(SECRET, lambda request: request.nonce, b"pong")) as fake:
        assert post(fake.address, "/ping", b"ping?", SECRET, WAIT) == b"pong"
    assert fake.request is not None
    assert fake.request.line == "POST /ping HTTP/1.1"
    assert fake.request.signed_for(fake.netloc)


@pytest.mark.parametrize(
    "answer",
    [
        signed_answer("impostor-secret", lambda request: request.nonce, b"ok"),
        signed_answer(SECRET, lambda request: b"\x00" * 16, b"ok"),
        reply_with(answer_bytes("HTTP/1.0 200 OK", {"Content-Length": "2"}, b"ok")),
    ],
    ids=["another secret", "signed for another request", "unsigned"],
)
def test_a_reply_not_signed_for_this_request_is_refused(answer: Answer) -> None:
    """A 200 reply signed with another secret, or signed for another request (a replayed
    reply), or not signed at all, raises RpcAuthError: its body is never returned."""
    with FakeServer(answer) as fake, pytest.raises(RpcAuthError, match="not signed"):
        post(fake.address, "/ping", b"", SECRET, WAIT)


def test_a_401_says_why() -> None:
    """A 401 raises RpcAuthError carrying the server's reason."""
    answer = reply_with(
        answer_bytes("HTTP/1.0 401 Unauthorized", {"Content-Length": "17"}, b"replayed request\n")
    )
    with FakeServer(answer) as fake, pytest.raises(RpcAuthError, match=r"\(replayed request\)"):
        post(fake.address, "/ping", b"", SECRET, WAIT)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nno length",
        b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.0 200 OK\r\nContent-Length: \xb2\r\n\r\nxx",
        b"HTTP/1.0 200 OK\r\n" + b"X-Filler: x\r\n" * 150 + b"\r\n",
        b"HTTP/1.0 200 OK\r\nX-Long: " + b"x" * 70_000 + b"\r\n\r\n",
    ],
    ids=[
        "hang up",
        "blank",
        "not http",
        "no length",
        "short",
        "odd length",
        "many headers",
        "long",
    ],
)
def test_malformed_answers_raise_rpc_errors(data: bytes) -> None:
    """Whatever a server answers, post() fails with an RpcError subclass, never another
    exception."""
    with FakeServer(reply_with(data)) as fake, pytest.raises(RpcError):
        post(fake.address, "/ping", b"", SECRET, WAIT)


def drip(data: bytes) -> Answer:
    """Return an answer writing ``data`` a byte every 50 ms until the client hangs up."""

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        for byte in data:
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return
            if select.select([conn], [], [], 0.05)[0]:
                return  # the client hung up

    return answer


DRIPPED = b"HTTP/1.0 200 OK\r\n" + b"X-Drip: " + b"d" * 10_000 + b"\r\n\r\n"

CALLS: List[Callable[[str], object]] = [
    lambda url: ActorClient(url, "calc", secret=SECRET, timeout=1.0).call("add", 1, 2),
    lambda url: ControllerClient(url, SECRET, timeout=1.0).ping(),
    lambda url: ActorClient(url, "calc", secret=SECRET, timeout=1.0).stream("echo"),
]


@pytest.mark.parametrize("call", CALLS, ids=["ActorClient.call", "ping", "stream"])
def test_a_dripping_server_is_timed_out_at_the_deadline(call: Callable[[str], object]) -> None:
    """A server that answers a byte at a time, each well within the timeout, still makes a
    call with timeout=1 raise RpcTimeoutError after about a second: the timeout bounds the
    whole call, not each read."""
    with FakeServer(drip(DRIPPED)) as fake:
        started = time.monotonic()
        with pytest.raises(RpcTimeoutError):
            call(fake.address)
        elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 5.0


def test_a_stream_handshake_is_signed_with_its_upgrade() -> None:
    """A stream request's signature covers its Upgrade token: the same head without it
    does not check."""

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        conn.sendall(answer_bytes("HTTP/1.0 404 Not Found", {"Content-Length": "0"}))

    with FakeServer(answer) as fake, pytest.raises(RpcProtocolError, match="404"):
        ActorClient(fake.address, "calc", secret=SECRET, timeout=WAIT).stream("echo")
    request = fake.request
    assert request is not None
    assert request.headers["Upgrade"] == STREAM_PROTOCOL
    assert request.signed_for(fake.netloc)
    del request.headers["Upgrade"]
    assert not request.signed_for(fake.netloc)


@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.builds(lambda rest: b"HTTP/1.0 " + rest, st.binary(max_size=2000)),
        st.builds(lambda rest: b"HTTP/1.0 200 OK\r\n" + rest, st.binary(max_size=2000)),
    )
)
def test_any_answer_is_an_rpc_error_or_a_signed_reply(data: bytes) -> None:
    """Whatever bytes a server answers with (not holding the secret, it cannot sign them),
    post() raises an RpcError subclass and nothing else."""
    with FakeServer(reply_with(data)) as fake, pytest.raises(RpcError):
        post(fake.address, "/ping", b"", SECRET, WAIT)
