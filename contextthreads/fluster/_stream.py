"""Signed frame streams: a persistent connection carrying many calls, each frame authenticated.

A stream starts as a signed HTTP request with ``Upgrade: fluster-stream``
whose body begins with a random client nonce; the server answers ``101``
with its own nonce, signed. Both sides then derive a session key from the
cluster secret and the two nonces, and exchange frames::

    length (4 bytes, big-endian) | HMAC-SHA256 (32 bytes) | body

The MAC covers the direction, a per-direction frame counter and the body, so
a frame cannot be altered, replayed (in this or another session), reordered
or reflected back to its sender. Nothing is unpickled before its MAC checks.
Traffic is authenticated, not encrypted.

Both halves of the handshake live here: ``connect()`` is the client's,
``ServerHandshake`` the server's (``_http`` writes its answer on the wire).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import os
import socket
import struct
from typing import cast

from ._wire import (
    MAX_BODY,
    SIGNATURE_HEADER,
    STREAM_PROTOCOL,
    RpcAuthError,
    RpcConnectionError,
    RpcProtocolError,
    as_rpc_error,
    refused_signature,
    sign,
    split_address,
    verify,
)

__all__ = (
    "NONCE_HEADER",
    "NONCE_SIZE",
    "FrameChannel",
    "ServerHandshake",
    "accept_signature",
    "connect",
    "server_channel",
)

NONCE_HEADER = "X-Fluster-Nonce"
NONCE_SIZE = 16

_HEADER = struct.Struct("!I32s")
_COUNTER = struct.Struct("!Q")
# Below this, one concatenation and the one-shot C HMAC beat incremental hashing.
_SMALL = 64 * 1024
_READ_BUFFER = 64 * 1024


def _session_key(secret: str, client_nonce: bytes, server_nonce: bytes) -> bytes:
    return hmac.digest(
        secret.encode("utf-8"), b"fluster-stream\0" + client_nonce + server_nonce, "sha256"
    )


def _accepted(client_nonce: bytes, server_nonce: bytes) -> bytes:
    return b"fluster-stream-accept\0" + client_nonce + server_nonce


def accept_signature(secret: str, client_nonce: bytes, server_nonce: bytes) -> str:
    """Return the signature a server puts on its ``101`` answer, binding both nonces."""
    return sign(secret, _accepted(client_nonce, server_nonce))


class FrameChannel:
    """One end of a signed frame stream over a connected socket.

    ``send()`` and ``recv()`` may each be used by one thread at a time (one
    sender and one receiver may run at once). Any failure leaves the channel
    unusable: close it. ``recv()`` returns ``None`` when the peer closed the
    connection between frames.
    """

    def __init__(
        self,
        sock: socket.socket,
        reader: io.BufferedIOBase,
        key: bytes,
        *,
        is_client: bool,
        max_body: int = MAX_BODY,
    ) -> None:
        #: The largest body ``send()`` sends and ``recv()`` accepts.
        self.max_body = max_body
        self._sock = sock
        self._reader = reader
        self._key = key
        self._out = b"C" if is_client else b"S"
        self._in = b"S" if is_client else b"C"
        self._sent = 0
        self._received = 0

    def _mac(self, direction: bytes, counter: int, body: bytes) -> bytes:
        prefix = direction + _COUNTER.pack(counter)
        if len(body) < _SMALL:
            return hmac.digest(self._key, prefix + body, "sha256")
        mac = hmac.new(self._key, prefix, hashlib.sha256)
        mac.update(body)
        return mac.digest()

    def settimeout(self, timeout: float | None) -> None:
        """Bound each following blocking send or receive by ``timeout`` seconds (None: no bound)."""
        self._sock.settimeout(timeout)

    def send(self, body: bytes) -> None:
        """Send ``body`` as one frame.

        Raises ``ValueError`` for a body over ``max_body``, and ``OSError``
        (``socket.timeout`` included) from the socket.
        """
        if len(body) > self.max_body:
            raise ValueError(f"a frame carries at most {self.max_body} bytes, not {len(body)}")
        header = _HEADER.pack(len(body), self._mac(self._out, self._sent, body))
        self._sent += 1
        if len(body) < _SMALL:
            self._sock.sendall(header + body)
        else:
            self._sock.sendall(header)
            self._sock.sendall(body)

    def recv(self) -> bytes | None:
        """Return the next frame's verified body, or None at a clean end of stream.

        Raises ``RpcAuthError`` for a frame that fails its MAC,
        ``RpcProtocolError`` for a malformed or truncated one, and ``OSError``
        (``socket.timeout`` included) from the socket.
        """
        header = self._reader.read(_HEADER.size)
        if not header:
            return None
        if len(header) != _HEADER.size:
            raise RpcProtocolError("the stream ended inside a frame header")
        length, mac = _HEADER.unpack(header)
        if length > self.max_body:
            raise RpcProtocolError(f"frame of {length} bytes exceeds the {self.max_body} limit")
        body = self._reader.read(length) if length else b""
        if len(body) != length:
            raise RpcProtocolError("the stream ended inside a frame")
        if not hmac.compare_digest(mac, self._mac(self._in, self._received, body)):
            raise RpcAuthError("a stream frame failed its signature check")
        self._received += 1
        return body

    def close(self) -> None:
        """Close the connection; safe to call more than once."""
        try:
            self._reader.close()
        finally:
            self._sock.close()


def server_channel(
    sock: socket.socket,
    reader: io.BufferedIOBase,
    secret: str,
    client_nonce: bytes,
    server_nonce: bytes,
) -> FrameChannel:
    """Return the server end of a stream whose handshake carried these nonces."""
    return FrameChannel(
        sock, reader, _session_key(secret, client_nonce, server_nonce), is_client=False
    )


class ServerHandshake:
    """The server half of a stream handshake, for one request whose signature checked.

    Raises ``ValueError`` for a body too short to start with the client's
    nonce. ``body`` is what follows the nonce: what the stream is for.
    ``headers()`` are those of the ``101`` answer (a fresh server nonce, and
    the secret's signature over both nonces); once it is written, ``channel()``
    is the server's end of the stream.
    """

    def __init__(self, secret: str, request_body: bytes) -> None:
        if len(request_body) < NONCE_SIZE:
            raise ValueError("a stream request starts with a nonce")
        self._secret = secret
        self._client_nonce = request_body[:NONCE_SIZE]
        self._server_nonce = os.urandom(NONCE_SIZE)
        self.body = request_body[NONCE_SIZE:]

    def headers(self) -> list[tuple[str, str]]:
        """Return the headers of the ``101`` answer that accepts the stream."""
        return [
            ("Connection", "Upgrade"),
            ("Upgrade", STREAM_PROTOCOL),
            (NONCE_HEADER, self._server_nonce.hex()),
            (
                SIGNATURE_HEADER,
                accept_signature(self._secret, self._client_nonce, self._server_nonce),
            ),
        ]

    def channel(self, sock: socket.socket, reader: io.BufferedIOBase) -> FrameChannel:
        """Return the server's end of the accepted stream, on the request's connection."""
        return server_channel(sock, reader, self._secret, self._client_nonce, self._server_nonce)


def _number(text: str) -> int:
    # str.isdigit() is true of more than int() takes ("²"): ASCII digits only.
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else -1


def _accept(reader: io.BufferedReader, where: str, secret: str, client_nonce: bytes) -> bytes:
    # Read the answer to a stream request; return the server's nonce once its signature checks.
    status_line = reader.readline(65537).decode("latin-1")
    if not status_line:
        raise RpcConnectionError(f"{where} closed the connection without answering")
    headers = http.client.parse_headers(reader)
    parts_of_status = status_line.split(None, 2)
    if len(parts_of_status) < 2 or not parts_of_status[0].startswith("HTTP/"):
        raise RpcProtocolError(f"{where} answered a stream request with {status_line!r}")
    status = _number(parts_of_status[1])
    if status == 401:
        raise refused_signature(where)
    if status != 101:
        detail = reader.read(max(0, min(_number(headers.get("Content-Length", "0")), 200)))
        raise RpcProtocolError(f"{where} answered {status} to a stream request: {detail!r}")
    try:
        server_nonce = bytes.fromhex(headers.get(NONCE_HEADER, ""))
    except ValueError:
        server_nonce = b""
    if len(server_nonce) != NONCE_SIZE or not verify(
        secret, _accepted(client_nonce, server_nonce), headers.get(SIGNATURE_HEADER)
    ):
        raise RpcAuthError(f"{where} accepted the stream without our secret's signature")
    return server_nonce


def connect(url: str, path: str, secret: str, body: bytes, timeout: float | None) -> FrameChannel:
    """Open a stream to ``url + path``, sending ``body`` with the handshake; return its channel.

    ``timeout`` bounds connecting and the handshake; the channel keeps it
    until ``settimeout()``. Raises an ``RpcError`` subclass on any failure:
    ``RpcConnectionError`` (its ``__cause__`` the ``OSError``), a timeout,
    a refused signature, or an answer other than a signed ``101``.
    """
    host, port, netloc = split_address(url)
    client_nonce = os.urandom(NONCE_SIZE)
    request_body = client_nonce + body
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {netloc}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {len(request_body)}\r\n"
        f"{SIGNATURE_HEADER}: {sign(secret, request_body)}\r\n"
        f"Connection: Upgrade\r\nUpgrade: {STREAM_PROTOCOL}\r\n\r\n"
    ).encode("latin-1")
    where = f"{url}{path}"
    try:
        sock = socket.create_connection((host, port), timeout)
    except OSError as exc:
        raise as_rpc_error(exc, where, timeout)  # noqa: B904 (it sets the cause)
    reader = cast(io.BufferedReader, sock.makefile("rb", buffering=_READ_BUFFER))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head + request_body)
        server_nonce = _accept(reader, where, secret, client_nonce)
    except BaseException as exc:
        reader.close()
        sock.close()
        if isinstance(exc, Exception):
            raise as_rpc_error(exc, where, timeout)  # noqa: B904 (it sets the cause)
        raise
    return FrameChannel(
        sock, reader, _session_key(secret, client_nonce, server_nonce), is_client=True
    )
