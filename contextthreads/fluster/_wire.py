"""The vocabulary every Fluster connection shares: header names, limits, signatures, errors.

The bottom floor of ``fluster``: the HTTP layer (``_http``) and the frame
streams (``_stream``) both speak it, and it imports nothing of theirs.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import socket
import urllib.parse

__all__ = (
    "MAX_BODY",
    "SIGNATURE_HEADER",
    "SIGNATURE_LENGTH",
    "STREAM_PROTOCOL",
    "RpcAuthError",
    "RpcConnectionError",
    "RpcError",
    "RpcProtocolError",
    "RpcTimeoutError",
    "as_rpc_error",
    "refused_signature",
    "sign",
    "split_address",
    "verify",
)

#: The header carrying a body's HMAC-SHA256, in hex.
SIGNATURE_HEADER = "X-Fluster-Signature"
#: How long that hex signature is.
SIGNATURE_LENGTH = 64
#: The ``Upgrade`` token of a signed frame stream.
STREAM_PROTOCOL = "fluster-stream"
#: The largest request body a server reads, and the largest stream frame.
MAX_BODY = 256 * 1024 * 1024


class RpcError(Exception):
    """A call did not get a usable answer: the infrastructure failed, not the remote code."""


class RpcConnectionError(RpcError, ConnectionError):
    """The server could not be reached, or dropped the connection before answering."""


class RpcTimeoutError(RpcError, TimeoutError):
    """The server did not answer within the call's timeout."""


class RpcAuthError(RpcError):
    """The server refused our signature (401), or its reply was not signed with our secret."""


class RpcProtocolError(RpcError):
    """The server answered with an unexpected status or a malformed body."""


def as_rpc_error(exc: Exception, where: str, timeout: float | None) -> Exception:
    """Return the ``RpcError`` a caller of ``where`` sees for the failure ``exc``.

    A socket timeout becomes ``RpcTimeoutError`` and any other socket or
    HTTP failure ``RpcConnectionError``, with ``exc`` as its cause; an
    ``RpcError``, or anything else, is returned as it is.
    """
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, socket.timeout):
        error: RpcError = RpcTimeoutError(f"no answer from {where} within {timeout}s")
    elif isinstance(exc, (OSError, http.client.HTTPException)):
        error = RpcConnectionError(f"{where}: {type(exc).__name__}: {exc}")
    else:
        return exc
    error.__cause__ = exc
    return error


def refused_signature(where: str) -> RpcAuthError:
    """Return the error for a 401 from ``where``: it does not hold our secret."""
    return RpcAuthError(f"{where} refused our signature: is the cluster secret the same?")


def sign(secret: str, body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``body`` keyed with ``secret``."""
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """Return True if ``signature`` is ``body``'s signature under ``secret`` (constant time)."""
    if signature is None:
        return False
    # Header values arrive decoded as latin-1; encoding back never fails.
    given = signature.strip().encode("latin-1", "replace")
    return hmac.compare_digest(sign(secret, body).encode("ascii"), given)


def split_address(url: str) -> tuple[str, int, str]:
    """Return ``(host, port, netloc)`` of an ``http://host:port`` address; else ``ValueError``."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None:
        raise ValueError(f"expected an address like http://host:port, got {url!r}")
    return parts.hostname, parts.port, parts.netloc
