"""The wire vocabulary: signatures, addresses, and the errors every call may raise."""

from __future__ import annotations

import http.client
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextthreads.fluster import RpcConnectionError, RpcError, RpcTimeoutError
from contextthreads.fluster._wire import as_rpc_error, sign, split_address, verify


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


def test_split_address_takes_only_http_host_and_port() -> None:
    """An http://host:port address splits into host, port and netloc (IPv6 unbracketed for
    connecting); anything else is a ValueError."""
    assert split_address("http://127.0.0.1:8080") == ("127.0.0.1", 8080, "127.0.0.1:8080")
    assert split_address("http://[::1]:9") == ("::1", 9, "[::1]:9")
    for url in ("https://127.0.0.1:1", "http://127.0.0.1", "127.0.0.1:1", "http://:1"):
        with pytest.raises(ValueError, match="expected an address"):
            split_address(url)
