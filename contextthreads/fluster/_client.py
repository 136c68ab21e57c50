"""The client half of signed HTTP: one request per connection, bounded by one deadline.

``send_request`` connects (through TLS for ``https://``), signs the request
for the server it names and sends it; ``read_answer_head`` reads the status
and headers of the answer. ``post`` is the whole call: it returns a reply
body only once the reply's signature, which binds it to this request, has
checked. Every wait of a call, connecting and the TLS handshake included,
comes out of the one ``timeout``.
"""

from __future__ import annotations

import email.message
import http.client
import io
import socket
import ssl
from typing import NamedTuple

from ._deadline import Deadline, GuardedReader, buffered, open_connection
from ._tls import client_context
from ._wire import (
    MAX_BODY,
    SIGNATURE_HEADER,
    RpcAuthError,
    RpcConnectionError,
    RpcProtocolError,
    as_rpc_error,
    number,
    refused_signature,
    signed_request_headers,
    split_address,
    verify_reply,
)

__all__ = ("Sent", "post", "read_answer_head", "send_request")

#: The most an answer's status line and headers may weigh.
MAX_ANSWER_HEAD = 64 * 1024


class Sent(NamedTuple):
    """A request on the wire: its connection, the reader of the answer, and its nonce."""

    sock: socket.socket
    raw: GuardedReader
    reader: io.BufferedReader
    nonce: bytes

    def close(self) -> None:
        """Close the connection."""
        self.reader.close()
        self.sock.close()


def send_request(
    url: str,
    method: str,
    path: str,
    body: bytes,
    secret: str,
    deadline: Deadline,
    ssl_context: ssl.SSLContext | None = None,
    *,
    upgrade: str = "",
) -> Sent:
    """Connect to ``url`` and send ``method path`` with ``body``, signed for that server.

    Raises ``ValueError`` for an address that is not ``http(s)://host:port``,
    and ``OSError`` (``socket.timeout`` when ``deadline`` passes) from the
    connection, which is closed then.
    """
    address = split_address(url)
    headers, nonce = signed_request_headers(secret, method, path, address.netloc, body, upgrade)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = open_connection(
        address.host, address.port, deadline, client_context(address, ssl_context)
    )
    raw = GuardedReader(sock, deadline, MAX_ANSWER_HEAD)
    sent = Sent(sock, raw, buffered(raw), nonce)
    try:
        sock.settimeout(deadline.remaining())
        sock.sendall((head + "\r\n").encode("latin-1") + body)
    except BaseException:
        sent.close()
        raise
    return sent


def read_answer_head(sent: Sent, where: str) -> tuple[int, email.message.Message]:
    """Return the status and headers of the answer to ``sent``.

    Raises ``RpcConnectionError`` if the server hung up without answering,
    ``RpcProtocolError`` for an answer that is not HTTP, and ``OSError`` or
    ``http.client.HTTPException`` from reading it.
    """
    status_line = sent.reader.readline(65537).decode("latin-1")
    if not status_line:
        raise RpcConnectionError(f"{where} closed the connection without answering")
    headers = http.client.parse_headers(sent.reader)
    parts = [*status_line.split(None, 2), "", ""]
    status = number(parts[1])
    if sent.raw.exhausted or not parts[0].startswith("HTTP/") or not 100 <= status <= 599:
        raise RpcProtocolError(f"{where} answered with {status_line[:200]!r}")
    sent.raw.budget = None
    return status, headers


def read_answer_body(sent: Sent, headers: email.message.Message, where: str) -> bytes:
    """Return the body of an answer whose head was read, as long as its Content-Length says."""
    length = number(headers.get("Content-Length"))
    if not 0 <= length <= MAX_BODY:
        raise RpcProtocolError(f"{where} answered without a usable Content-Length")
    data = sent.reader.read(length)
    if len(data) != length:
        raise RpcConnectionError(f"{where} closed the connection inside its answer")
    return data


def post(
    url: str,
    path: str,
    body: bytes,
    secret: str,
    timeout: float | None,
    ssl_context: ssl.SSLContext | None = None,
) -> bytes:
    """POST ``body`` to ``url + path`` signed with ``secret`` and return the verified reply body.

    ``timeout`` bounds the whole call. Raises an ``RpcError`` subclass on
    any failure; never returns a body whose signature did not check.
    Thread-safe: each call uses its own connection.
    """
    where = f"{url}{path}"
    deadline = Deadline(timeout)
    try:
        sent = send_request(url, "POST", path, body, secret, deadline, ssl_context)
        try:
            status, headers = read_answer_head(sent, where)
            data = read_answer_body(sent, headers, where)
        finally:
            sent.close()
    except (OSError, http.client.HTTPException) as exc:
        raise as_rpc_error(exc, where, timeout)  # noqa: B904 (it sets the cause)
    if status == 401:
        raise refused_signature(where, data[:200].decode("ascii", "replace").strip())
    if not verify_reply(secret, sent.nonce, status, data, headers.get(SIGNATURE_HEADER)):
        raise RpcAuthError(f"the reply from {where} is not signed with the cluster secret")
    if status != 200:
        raise RpcProtocolError(f"{where} answered {status}: {data[:200]!r}")
    return data
