"""The wire vocabulary: signed heads and replies, addresses, the errors every call may raise."""

from __future__ import annotations

import email.message
import hashlib
import http.client
import io
import socket
import time
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextthreads.fluster import RpcConnectionError, RpcError, RpcTimeoutError
from contextthreads.fluster._wire import (
    DIGEST_HEADER,
    NONCE_HEADER,
    NONCE_SIZE,
    SIGNATURE_HEADER,
    STREAM_PROTOCOL,
    TIMESTAMP_HEADER,
    RequestHead,
    as_rpc_error,
    check_request_head,
    reply_signature,
    sign,
    signed_request_headers,
    split_address,
    verify,
    verify_reply,
)

from .support import SECRET, WAIT


@given(body=st.binary(max_size=256), secret=st.text(min_size=1, max_size=40), flip=st.integers())
def test_signature_accepts_only_the_signed_body(body: bytes, secret: str, flip: int) -> None:
    """A body verifies under the secret that signed it, and fails if one byte changes or
    another secret is used."""
    signature = sign(secret, body)
    assert verify(secret, body, signature)
    assert not verify(secret + "x", body, signature)
    assert not verify(secret, body, None)
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        assert not verify(secret, changed, signature)


def test_socket_failures_become_rpc_errors_caused_by_them() -> None:
    """A socket timeout becomes RpcTimeoutError, any other socket or HTTP failure
    RpcConnectionError, each with the original as its cause; RpcErrors and anything else
    come back as they are."""
    timeout = socket.timeout("timed out")
    as_timeout = as_rpc_error(timeout, "http://h:1/x", 2.5)
    assert isinstance(as_timeout, RpcTimeoutError)
    assert isinstance(as_timeout, TimeoutError)
    assert "http://h:1/x within 2.5s" in str(as_timeout)
    assert as_timeout.__cause__ is timeout
    for failure in (ConnectionResetError("reset"), http.client.BadStatusLine("junk")):
        converted = as_rpc_error(failure, "http://h:1/x", None)
        assert isinstance(converted, RpcConnectionError)
        assert converted.__cause__ is failure
    already = RpcError("as it is")
    assert as_rpc_error(already, "anywhere", None) is already
    other = KeyError("not a transport failure")
    assert as_rpc_error(other, "anywhere", None) is other


def test_split_address_takes_only_http_or_https_host_and_port() -> None:
    """An http(s)://host:port address splits into scheme, host, port and netloc (IPv6
    unbracketed for connecting, the netloc in lower case); anything else is a ValueError."""
    assert split_address("http://127.0.0.1:8080") == ("http", "127.0.0.1", 8080, "127.0.0.1:8080")
    assert split_address("https://[::1]:9") == ("https", "::1", 9, "[::1]:9")
    assert split_address("http://Host.Example:1").netloc == "host.example:1"
    for url in ("ftp://127.0.0.1:1", "http://127.0.0.1", "127.0.0.1:1", "http://:1", "http://h:x"):
        with pytest.raises(ValueError, match="expected an address"):
            split_address(url)


# -- signed request heads ---------------------------------------------------------

HOST = "127.0.0.1:8000"
HOSTS = frozenset([HOST])


def head_of(headers: dict[str, str]) -> email.message.Message:
    """Return ``headers`` as a server reads them (case-insensitive, first value wins)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return http.client.parse_headers(io.BytesIO(lines.encode("latin-1") + b"\r\n"))


def test_a_signed_head_promises_its_body() -> None:
    """A head signed for this server checks without the body, and gives the body's length
    and digest, the timestamp (now) and the nonce (fresh each time, 16 bytes)."""
    body = b"the body"
    headers, nonce = signed_request_headers(SECRET, "POST", "/call", HOST, body)
    head = check_request_head(SECRET, "POST", "/call", head_of(headers), HOSTS)
    assert isinstance(head, RequestHead)
    assert (head.length, head.nonce, head.digest) == (
        len(body),
        nonce,
        hashlib.sha256(body).hexdigest(),
    )
    assert len(nonce) == NONCE_SIZE
    assert abs(head.timestamp - time.time()) < WAIT
    assert signed_request_headers(SECRET, "POST", "/call", HOST, body)[1] != nonce


#: Each thing the signature binds, and a change to it on the wire.
TAMPERINGS: dict[str, Callable[[dict[str, str]], None]] = {
    "host": lambda h: h.update(Host="127.0.0.1:8001"),
    "length": lambda h: h.update({"Content-Length": "9"}),
    "timestamp": lambda h: h.update({TIMESTAMP_HEADER: "1.5"}),
    "nonce": lambda h: h.update({NONCE_HEADER: "ab" * NONCE_SIZE}),
    "digest": lambda h: h.update({DIGEST_HEADER: "00" * 32}),
    "upgrade": lambda h: h.update(Upgrade=STREAM_PROTOCOL),
    "signature": lambda h: h.update({SIGNATURE_HEADER: sign("another secret", b"")}),
}


@pytest.mark.parametrize("field", list(TAMPERINGS))
def test_any_change_to_a_signed_head_is_refused(field: str) -> None:
    """Changing anything the signature binds (the server it is meant for, the body's length
    or digest, the timestamp, the nonce, the upgrade token) fails the check; so do another
    method or path, and a head signed for another server."""
    headers, _ = signed_request_headers(SECRET, "POST", "/call", HOST, b"the body")
    TAMPERINGS[field](headers)
    assert check_request_head(SECRET, "POST", "/call", head_of(headers), HOSTS) == "bad signature"
    headers, _ = signed_request_headers(SECRET, "POST", "/call", HOST, b"the body")
    for method, path in (("PUT", "/call"), ("POST", "/call?x"), ("POST", "/register")):
        assert check_request_head(SECRET, method, path, head_of(headers), HOSTS) == "bad signature"
    other = frozenset(["127.0.0.1:8001"])
    assert check_request_head(SECRET, "POST", "/call", head_of(headers), other) == (
        "meant for another server"
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (NONCE_HEADER, "short"),
        (NONCE_HEADER, "zz" * NONCE_SIZE),
        (DIGEST_HEADER, "0" * 63),
        (TIMESTAMP_HEADER, "-1"),
        (TIMESTAMP_HEADER, "1e9"),
        (TIMESTAMP_HEADER, "\u00b2"),
        ("Content-Length", "-1"),
        ("Content-Length", "\u00b2"),
    ],
)
def test_malformed_signature_headers_are_refused(name: str, value: str) -> None:
    """Headers that do not parse (strictly: ASCII digits, hex of the right length) refuse the
    request before any signature is computed."""
    headers, _ = signed_request_headers(SECRET, "POST", "/call", HOST, b"")
    headers[name] = value
    refusal = check_request_head(SECRET, "POST", "/call", head_of(headers), HOSTS)
    assert refusal == "missing or malformed signature headers"
    assert check_request_head(SECRET, "POST", "/", head_of({}), HOSTS) == refusal


def test_a_reply_signature_answers_one_request() -> None:
    """A reply's signature binds the request's nonce, the status and the body."""
    nonce = bytes(NONCE_SIZE)
    signature = reply_signature(SECRET, nonce, 200, b"ok")
    assert verify_reply(SECRET, nonce, 200, b"ok", signature)
    for other in (
        (SECRET, b"\x01" * NONCE_SIZE, 200, b"ok"),
        (SECRET, nonce, 500, b"ok"),
        (SECRET, nonce, 200, b"ok!"),
        ("another secret", nonce, 200, b"ok"),
    ):
        assert not verify_reply(*other, signature)
    assert not verify_reply(SECRET, nonce, 200, b"ok", None)
