"""Signed HTTP: every request and reply body carries an HMAC-SHA256 made with the cluster secret.

Servers check the signature before they look at the body, and answer 401 to
anything unsigned or signed with another secret; clients check the reply's
signature before they hand its body on. Plain ``http.server`` and
``http.client``: one request per connection, bodies of any bytes. A signed
request may instead upgrade its connection to a frame stream (``_stream``).
"""

from __future__ import annotations

import contextvars
import http.client
import logging
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Tuple, TypeVar, Union

from .._thread import ContextThread
from ._stream import FrameChannel, ServerHandshake
from ._wire import (
    MAX_BODY,
    SIGNATURE_HEADER,
    SIGNATURE_LENGTH,
    STREAM_PROTOCOL,
    RpcAuthError,
    RpcProtocolError,
    as_rpc_error,
    refused_signature,
    sign,
    split_address,
    verify,
)

__all__ = (
    "Reply",
    "SignedServer",
    "SignedService",
    "StreamOpener",
    "StreamServe",
    "post",
)

logger = logging.getLogger("contextthreads.fluster")

#: (HTTP status, body) as a server's dispatch function returns it.
Reply = Tuple[int, bytes]
#: What a server's stream opener returns: a function that serves the stream, or a refusal.
StreamServe = Callable[[FrameChannel], None]
StreamOpener = Callable[[str, bytes], Union[StreamServe, Reply]]


class _Handler(BaseHTTPRequestHandler):
    server: SignedServer
    protocol_version = "HTTP/1.0"
    # Bounds how long a silent client can hold a server thread.
    timeout = 30
    # Replies and stream frames are small writes answered at once: don't hold them back.
    disable_nagle_algorithm = True

    def __getattr__(self, name: str) -> Any:
        # Every method, known or not, gets the same treatment: no signature, 401.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _reply(self, status: int, body: bytes, *, signed: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if signed:
            self.send_header(SIGNATURE_HEADER, sign(self.server.secret, body))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self) -> None:
        self.close_connection = True
        self._reply(401, b"missing or invalid signature\n", signed=False)

    def _handle(self) -> None:
        signature = self.headers.get(SIGNATURE_HEADER)
        if signature is None or len(signature.strip()) != SIGNATURE_LENGTH:
            self._refuse()
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._reply(413 if length > MAX_BODY else 400, b"bad Content-Length\n", signed=False)
            return
        body = self.rfile.read(length)
        if len(body) != length or not verify(self.server.secret, body, signature):
            self._refuse()
            return
        path = urllib.parse.urlsplit(self.path).path
        if self.headers.get("Upgrade", "").strip().lower() == STREAM_PROTOCOL:
            self._upgrade(path, body)
            return
        try:
            status, reply = self.server.dispatch(self.command, path, body)
        except Exception:
            logger.exception(
                "fluster server %s failed on %s %s", self.server.name, self.command, path
            )
            status, reply = 500, b"internal server error\n"
        self._reply(status, reply, signed=True)

    def _upgrade(self, path: str, body: bytes) -> None:
        self.close_connection = True
        opener = self.server.open_stream
        if opener is None or self.command != "POST":
            self._reply(404, b"no streams here\n", signed=True)
            return
        try:
            handshake = ServerHandshake(self.server.secret, body)
        except ValueError as exc:
            self._reply(400, f"{exc}\n".encode(), signed=True)
            return
        try:
            opened = opener(path, handshake.body)
        except Exception:
            logger.exception(
                "fluster server %s failed to open a stream on %s", self.server.name, path
            )
            opened = 500, b"internal server error\n"
        if isinstance(opened, tuple):
            self._reply(*opened, signed=True)
            return
        self.send_response(101)
        for name, value in handshake.headers():
            self.send_header(name, value)
        self.end_headers()
        # A stream idles between calls for as long as its client likes; it ends with the
        # client's connection, or with this process.
        self.connection.settimeout(None)
        try:
            opened(handshake.channel(self.connection, self.rfile))
        except (RpcAuthError, RpcProtocolError) as exc:
            # A forged, replayed or mangled frame: the stream is over, and someone should know.
            logger.warning(
                "%s: stream from %s dropped: %s", self.server.name, self.client_address, exc
            )

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s: " + format, self.server.name, self.address_string(), *args)


class SignedServer(ThreadingHTTPServer):
    """A threading HTTP server that answers only requests signed with ``secret``.

    It binds in the constructor, so ``port`` is the port actually bound (pass
    0 for any free one) and nobody can take it between binding and serving.
    ``dispatch(method, path, body)`` runs on a ``ContextThread`` per request,
    in a copy of the context current at construction, and returns
    ``(status, body)``; its replies are signed. A request upgrading to a
    frame stream goes to ``open_stream(path, body)`` instead, which returns
    the function that serves the stream on that thread, or ``(status, body)``
    to refuse it. ``start()`` serves from a
    background thread; ``close()`` stops serving and frees the port. Both are
    safe to call from any thread other than the serving one.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        dispatch: Callable[[str, str, bytes], Reply],
        name: str,
        open_stream: StreamOpener | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a SignedServer needs a non-empty secret")
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.secret = secret
        self.dispatch = dispatch
        self.open_stream = open_stream
        self.name = name
        self._base_context = contextvars.copy_context()
        self._thread: threading.Thread | None = None
        self._closed = False
        super().__init__((host, port), _Handler)

    @property
    def host(self) -> str:
        """Return the address the socket is bound to."""
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        """Return the port the socket is bound to."""
        return int(self.server_address[1])

    def url(self, host: str | None = None) -> str:
        """Return ``http://host:port``, showing ``host`` instead of the bound address if given."""
        shown = host or self.host
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = ContextThread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.name}-request",
            daemon=True,
            context=self._base_context.copy(),
        )
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The stdlib prints these to stderr; a client that hung up is routine here.
        logger.debug("%s: error serving %s", self.name, client_address, exc_info=True)

    def start(self) -> None:
        """Serve requests from a daemon thread until ``close()``."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} is already serving")
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name=self.name, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and close the listening socket; requests in flight may still finish."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
        self.server_close()


_Service = TypeVar("_Service", bound="SignedService")


class SignedService:
    """The public face of a ``SignedServer``: where it is, and serving it in the background.

    For classes that set ``_server`` (the SignedServer) and
    ``_advertise_host`` (the host others reach it by, or None) in their
    constructor. ``start()`` and ``close()`` are thread-safe.
    """

    _server: SignedServer
    _advertise_host: str | None

    @property
    def port(self) -> int:
        """Return the port actually bound."""
        return self._server.port

    @property
    def address(self) -> str:
        """Return ``http://host:port``: the advertised host (else the bound one) and bound port."""
        return self._server.url(self._advertise_host)

    def start(self: _Service) -> _Service:
        """Serve from a background thread; return self."""
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.close()

    def __enter__(self: _Service) -> _Service:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def post(url: str, path: str, body: bytes, secret: str, timeout: float | None) -> bytes:
    """POST ``body`` to ``url + path`` signed with ``secret`` and return the verified reply body.

    ``timeout`` bounds the connection and each wait for data. Raises an
    ``RpcError`` subclass on any failure; never returns an unverified body.
    Thread-safe: each call uses its own connection.
    """
    host, port, _ = split_address(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(
            "POST",
            path,
            body,
            {SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/octet-stream"},
        )
        response = connection.getresponse()
        data = response.read()
        status, reply_signature = response.status, response.getheader(SIGNATURE_HEADER)
    except (OSError, http.client.HTTPException) as exc:
        raise as_rpc_error(exc, f"{url}{path}", timeout)  # noqa: B904 (it sets the cause)
    finally:
        connection.close()
    if status == 401:
        raise refused_signature(f"{url}{path}")
    if not verify(secret, data, reply_signature):
        raise RpcAuthError(f"the reply from {url}{path} is not signed with the cluster secret")
    if status != 200:
        raise RpcProtocolError(f"{url}{path} answered {status}: {data[:200]!r}")
    return data
