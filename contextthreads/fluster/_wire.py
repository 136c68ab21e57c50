"""The vocabulary every Fluster connection shares: header names, limits, signatures, errors.

The bottom floor of ``fluster``: the HTTP layer (``_http``, ``_client``) and
the frame streams (``_stream``) all speak it, and it imports nothing of theirs.

A request is signed before its body is sent, so that a server can refuse it
having read only its head. The signature (``X-Fluster-Signature``) is an
HMAC-SHA256 under the cluster secret of one canonical text::

    fluster-request-1 \\n method \\n path \\n host \\n length \\n timestamp \\n nonce
    \\n body digest \\n upgrade token

``host`` is the ``Host`` header: the address of the server the request is
meant for, as the client names it. The timestamp (``X-Fluster-Timestamp``,
seconds since the epoch), the random nonce (``X-Fluster-Nonce``, 16 bytes
in hex) and the body's SHA-256 (``X-Fluster-Body-Digest``) travel in headers
too. A reply's signature covers the request's nonce, the status and the
body, so it answers that one request and no other.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import os
import socket
import ssl
import time
import urllib.parse
from typing import NamedTuple, Protocol

__all__ = (
    "CLOCK_WINDOW",
    "DIGEST_HEADER",
    "MAX_BODY",
    "NONCE_HEADER",
    "NONCE_SIZE",
    "SIGNATURE_HEADER",
    "STREAM_PROTOCOL",
    "TIMESTAMP_HEADER",
    "Address",
    "Headers",
    "RequestHead",
    "RpcAuthError",
    "RpcConnectionError",
    "RpcError",
    "RpcProtocolError",
    "RpcTimeoutError",
    "as_rpc_error",
    "check_request_head",
    "number",
    "refused_signature",
    "reply_signature",
    "sign",
    "signed_request_headers",
    "split_address",
    "verify",
    "verify_reply",
)

#: The header carrying a request's or a reply's HMAC-SHA256, in hex.
SIGNATURE_HEADER = "X-Fluster-Signature"
#: When a request was signed: seconds since the epoch, as a decimal.
TIMESTAMP_HEADER = "X-Fluster-Timestamp"
#: A request's random nonce (a stream's client nonce), or a 101 answer's server nonce, in hex.
NONCE_HEADER = "X-Fluster-Nonce"
#: The SHA-256 of a request's body, in hex.
DIGEST_HEADER = "X-Fluster-Body-Digest"
NONCE_SIZE = 16
#: The ``Upgrade`` token of a signed frame stream.
STREAM_PROTOCOL = "fluster-stream"
#: The largest request body a server reads, and the largest stream frame.
MAX_BODY = 256 * 1024 * 1024
#: How far, in seconds, a request's timestamp may be from the server's clock, either way.
CLOCK_WINDOW = 60.0

_HEX = frozenset("0123456789abcdef")


class RpcError(Exception):
    """A call did not get a usable answer: the infrastructure failed, not the remote code."""


class RpcConnectionError(RpcError, ConnectionError):
    """The server could not be reached, or dropped the connection before answering.

    Also a ``ConnectionError``.
    """


class RpcTimeoutError(RpcError, TimeoutError):
    """The server did not answer within the call's timeout. Also a ``TimeoutError``."""


class RpcAuthError(RpcError):
    """The server refused our request (401), or its reply or certificate was not the cluster's."""


class RpcProtocolError(RpcError):
    """The server answered with an unexpected status or a malformed body."""


def as_rpc_error(exc: Exception, where: str, timeout: float | None) -> Exception:
    """Return the ``RpcError`` a caller of ``where`` sees for the failure ``exc``.

    A socket timeout becomes ``RpcTimeoutError``, a server certificate that
    fails verification ``RpcAuthError``, and any other socket, TLS or HTTP
    failure ``RpcConnectionError``, with ``exc`` as its cause; an
    ``RpcError``, or anything else, is returned as it is.
    """
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, socket.timeout):
        error: RpcError = RpcTimeoutError(f"no answer from {where} within {timeout}s")
    elif isinstance(exc, ssl.SSLCertVerificationError):
        error = RpcAuthError(f"{where}: the server's certificate failed verification: {exc}")
    elif isinstance(exc, (OSError, http.client.HTTPException)):
        error = RpcConnectionError(f"{where}: {type(exc).__name__}: {exc}")
    else:
        return exc
    error.__cause__ = exc
    return error


def refused_signature(where: str, reason: str = "") -> RpcAuthError:
    """Return the error for a 401 from ``where``, giving the server's (unsigned) ``reason``."""
    shown = f" ({reason})" if reason else ""
    return RpcAuthError(
        f"{where} refused our request{shown}: is the cluster secret the same, and the "
        "clocks within a minute of each other?"
    )


def sign(secret: str, data: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``data`` keyed with ``secret``."""
    return hmac.new(secret.encode("utf-8"), data, hashlib.sha256).hexdigest()


def verify(secret: str, data: bytes, signature: str | None) -> bool:
    """Return True if ``signature`` is ``data``'s signature under ``secret`` (constant time)."""
    if signature is None:
        return False
    # Header values arrive decoded as latin-1; encoding back never fails.
    given = signature.strip().encode("latin-1", "replace")
    return hmac.compare_digest(sign(secret, data).encode("ascii"), given)


def _request_text(
    method: str,
    path: str,
    host: str,
    length: int,
    timestamp: str,
    nonce: str,
    digest: str,
    upgrade: str,
) -> bytes:
    fields = ("fluster-request-1", method, path, host, str(length), timestamp, nonce, digest)
    return "\n".join((*fields, upgrade)).encode("latin-1", "replace")


def signed_request_headers(
    secret: str,
    method: str,
    path: str,
    host: str,
    body: bytes,
    upgrade: str = "",
    *,
    now: float | None = None,
) -> tuple[dict[str, str], bytes]:
    """Return the headers that sign a request for ``host``, and the request's fresh nonce.

    ``upgrade`` is the ``Upgrade`` token the request carries, if any; ``now``
    the time it is signed at (default: ``time.time()``).
    """
    nonce = os.urandom(NONCE_SIZE)
    timestamp = f"{time.time() if now is None else now:.3f}"
    digest = hashlib.sha256(body).hexdigest()
    text = _request_text(method, path, host, len(body), timestamp, nonce.hex(), digest, upgrade)
    headers = {
        "Host": host,
        "Content-Length": str(len(body)),
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce.hex(),
        DIGEST_HEADER: digest,
        SIGNATURE_HEADER: sign(secret, text),
    }
    if upgrade:
        headers.update({"Connection": "Upgrade", "Upgrade": upgrade})
    return headers, nonce


class Headers(Protocol):
    """Headers as ``http.client.parse_headers()`` returns them (an ``email.message.Message``)."""

    def get(self, name: str, failobj: None = None) -> str | None:
        """Return the first value of the header ``name``, or None."""
        ...


class RequestHead(NamedTuple):
    """What a request's verified head promises: its body's length and digest, when, which nonce."""

    length: int
    timestamp: float
    nonce: bytes
    digest: str


def number(text: str | None) -> int:
    """Return ``text`` as a non-negative decimal of at most 12 ASCII digits, else -1."""
    # str.isdigit() is true of more than int() takes ("²"): ASCII digits only.
    text = (text or "").strip()
    return int(text) if 0 < len(text) <= 12 and text.isascii() and text.isdigit() else -1


def _timestamp(text: str) -> float:
    whole, _, fraction = text.partition(".")
    if number(whole) < 0 or (fraction and number(fraction) < 0):
        return -1.0
    return float(text)


def check_request_head(
    secret: str, method: str, path: str, headers: Headers, hosts: frozenset[str]
) -> RequestHead | str:
    """Return what a request's head promises if its signature checks, else why not.

    ``hosts`` are the names (``host:port``, lower case) of the server that
    reads it: a request meant for any other is refused. Nothing of the body
    is needed, so a server may refuse before reading it. The clock and the
    nonce are for the server's ``ReplayGuard`` to judge.
    """
    signature = headers.get(SIGNATURE_HEADER) or ""
    nonce = (headers.get(NONCE_HEADER) or "").strip().lower()
    digest = (headers.get(DIGEST_HEADER) or "").strip().lower()
    stamp = (headers.get(TIMESTAMP_HEADER) or "").strip()
    host = (headers.get("Host") or "").strip()
    length = number(headers.get("Content-Length") or "0")
    upgrade = (headers.get("Upgrade") or "").strip()
    timestamp = _timestamp(stamp)
    if (
        len(nonce) != 2 * NONCE_SIZE
        or not _HEX.issuperset(nonce)
        or len(digest) != 64
        or not _HEX.issuperset(digest)
        or timestamp < 0
        or length < 0
    ):
        return "missing or malformed signature headers"
    text = _request_text(method, path, host, length, stamp, nonce, digest, upgrade)
    if not verify(secret, text, signature):
        return "bad signature"
    if host.lower() not in hosts:
        return "meant for another server"
    return RequestHead(length, timestamp, bytes.fromhex(nonce), digest)


def _reply_text(nonce: bytes, status: int, body: bytes) -> bytes:
    return b"fluster-reply-1\n%s\n%d\n" % (nonce.hex().encode(), status) + body


def reply_signature(secret: str, nonce: bytes, status: int, body: bytes) -> str:
    """Return the signature of a reply with ``status`` and ``body`` to the request ``nonce``."""
    return sign(secret, _reply_text(nonce, status, body))


def verify_reply(
    secret: str, nonce: bytes, status: int, body: bytes, signature: str | None
) -> bool:
    """Return True if ``signature`` signs this reply to the request ``nonce`` (constant time)."""
    return verify(secret, _reply_text(nonce, status, body), signature)


class Address(NamedTuple):
    """A server address, split: ``scheme`` (http or https), ``host``, ``port``, ``netloc``."""

    scheme: str
    host: str
    port: int
    netloc: str


def split_address(url: str) -> Address:
    """Split an ``http://host:port`` or ``https://host:port`` address; else ``ValueError``.

    ``netloc`` (``host:port``, IPv6 hosts bracketed) is what a request names
    as its ``Host``.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ValueError(f"expected an address like http://host:port, got {url!r}")
    return Address(parts.scheme, parts.hostname, port, parts.netloc.lower())
