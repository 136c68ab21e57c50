"""Signed frame streams: a persistent connection carrying many calls, each frame authenticated.

A stream starts as a signed HTTP request (``_wire``) with ``Upgrade:
fluster-stream``; its nonce is the client's nonce. The server answers
``101`` with its own nonce, signed over both. Both sides then derive a
session key from the cluster secret and the two nonces, and exchange
frames::

    length (4 bytes, big-endian) | HMAC-SHA256 (32 bytes) | body

The MAC covers the direction, a per-direction frame counter and the body, so
a frame cannot be altered, replayed (in this or another session), reordered
or reflected back to its sender. Nothing is unpickled before its MAC checks.
Without TLS, traffic is authenticated, not encrypted.

Both halves of the handshake live here: ``connect()`` is the client's,
``ServerHandshake`` the server's (``_http`` writes its answer on the wire).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import os
import select
import socket
import ssl
import struct

from ._client import Sent, read_answer_head, send_request
from ._deadline import Deadline, keep_alive
from ._wire import (
    MAX_BODY,
    NONCE_HEADER,
    NONCE_SIZE,
    SIGNATURE_HEADER,
    STREAM_PROTOCOL,
    RpcAuthError,
    RpcProtocolError,
    as_rpc_error,
    number,
    refused_signature,
    sign,
    verify,
)

__all__ = (
    "FrameChannel",
    "ServerHandshake",
    "accept_signature",
    "connect",
    "server_channel",
)

_HEADER = struct.Struct("!I32s")
_COUNTER = struct.Struct("!Q")
# Below this, one concatenation and the one-shot C HMAC beat incremental hashing.
_SMALL = 64 * 1024


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

    ``ActorClient.stream()`` makes the client's end, and the actor server
    hands the other to the actor's method; neither is made by hand. Each
    frame is authenticated by an HMAC over its direction, its sequence number
    and its body, under a key derived from both sides' nonces, so a frame
    cannot be altered, replayed, reordered or reflected. ``send()`` and
    ``recv()`` may each be used by one thread at a time (one sender and one
    receiver may run at once). Any failure leaves the channel unusable: close
    it.

    Args:
        sock: The connected socket, after the handshake.
        reader: A buffered reader over ``sock``.
        key: The stream's key, from the handshake.
        is_client: Which end this is, which sets the direction of its frames.
        max_body: The largest body ``send()`` sends and ``recv()`` accepts.
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
        """Bound each following blocking send or receive by ``timeout`` seconds.

        Args:
            timeout: Seconds, or None for no bound.
        """
        self._sock.settimeout(timeout)

    def peer_closed(self) -> bool:
        """Return whether the peer has hung up, without waiting or reading (for an idle stream)."""
        try:
            if not select.select([self._sock], [], [], 0)[0]:
                return False
            # The socket's own bytes, even under TLS: a peer gone is a connection at its end.
            return socket.socket.recv(self._sock, 1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def send(self, body: bytes) -> None:
        """Send ``body`` as one frame.

        Args:
            body: At most ``max_body`` bytes.

        Raises:
            ValueError: For a body over ``max_body``.
            OSError: From the socket, ``socket.timeout`` included.
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

        None means the peer closed the connection between frames.

        Raises:
            RpcAuthError: For a frame that fails its MAC.
            RpcProtocolError: For a malformed or truncated frame.
            OSError: From the socket, ``socket.timeout`` included.
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

    ``client_nonce`` is the request's nonce. ``headers()`` are those of the
    ``101`` answer (a fresh server nonce, and the secret's signature over
    both nonces); once it is written, ``channel()`` is the server's end of
    the stream.
    """

    def __init__(self, secret: str, client_nonce: bytes) -> None:
        self._secret = secret
        self._client_nonce = client_nonce
        self._server_nonce = os.urandom(NONCE_SIZE)

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


def _accept(sent: Sent, where: str, secret: str) -> bytes:
    # Read the answer to a stream request; return the server's nonce once its signature checks.
    status, headers = read_answer_head(sent, where)
    if status == 401:
        detail = sent.reader.read(max(0, min(number(headers.get("Content-Length")), 200)))
        raise refused_signature(where, detail.decode("ascii", "replace").strip())
    if status != 101:
        detail = sent.reader.read(max(0, min(number(headers.get("Content-Length")), 200)))
        raise RpcProtocolError(f"{where} answered {status} to a stream request: {detail!r}")
    try:
        server_nonce = bytes.fromhex(headers.get(NONCE_HEADER, ""))
    except ValueError:
        server_nonce = b""
    if len(server_nonce) != NONCE_SIZE or not verify(
        secret, _accepted(sent.nonce, server_nonce), headers.get(SIGNATURE_HEADER)
    ):
        raise RpcAuthError(f"{where} accepted the stream without our secret's signature")
    return server_nonce


def connect(
    url: str,
    path: str,
    secret: str,
    body: bytes,
    timeout: float | None,
    ssl_context: ssl.SSLContext | None = None,
) -> FrameChannel:
    """Open a stream to ``url + path``, sending ``body`` with the handshake; return its channel.

    ``timeout`` bounds connecting and the whole handshake; then the channel
    keeps it for each send and receive until ``settimeout()``. Raises an
    ``RpcError`` subclass on any failure: ``RpcConnectionError`` (its
    ``__cause__`` the ``OSError``), a timeout, a refused signature, or an
    answer other than a signed ``101``.
    """
    where = f"{url}{path}"
    deadline = Deadline(timeout)
    try:
        sent = send_request(
            url, "POST", path, body, secret, deadline, ssl_context, upgrade=STREAM_PROTOCOL
        )
    except OSError as exc:
        raise as_rpc_error(exc, where, timeout)  # noqa: B904 (it sets the cause)
    try:
        server_nonce = _accept(sent, where, secret)
        sent.raw.release()
        sent.sock.settimeout(timeout)
        keep_alive(sent.sock)
    except BaseException as exc:
        sent.close()
        if isinstance(exc, (OSError, http.client.HTTPException)):
            raise as_rpc_error(exc, where, timeout)  # noqa: B904 (it sets the cause)
        raise
    return FrameChannel(
        sent.sock,
        sent.reader,
        _session_key(secret, sent.nonce, server_nonce),
        is_client=True,
    )
