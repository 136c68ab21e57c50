"""The server half of signed HTTP: a server that reads nothing of a request it cannot trust.

Each connection first sends its head (request line and headers) within
``head_timeout`` seconds and ``MAX_HEAD`` bytes (a TLS handshake included).
Its signature (``_wire``) binds method, path, the server it is meant for,
the body's length and digest, a timestamp and a nonce, so the server checks
it, then the clock window and the nonce (``ReplayGuard``), before reading a
byte of the body. Unsigned, forged, misdirected, stale and replayed requests
get 401 and the connection is closed. At most ``max_pending`` connections
may be at that stage at once (``Admission``); a new one beyond that drops
the oldest. Replies are signed for the request they answer. A signed
request may instead upgrade its connection to a frame stream (``_stream``).
"""

from __future__ import annotations

import contextvars
import hashlib
import io
import logging
import socket
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Tuple, TypeVar, Union

from .._thread import ContextThread
from ._admission import Admission
from ._deadline import Deadline, GuardedReader, buffered, keep_alive, tls_handshake
from ._replay import ReplayGuard
from ._stream import FrameChannel, ServerHandshake
from ._wire import (
    MAX_BODY,
    SIGNATURE_HEADER,
    STREAM_PROTOCOL,
    RpcAuthError,
    RpcProtocolError,
    check_request_head,
    reply_signature,
)

__all__ = (
    "HEAD_TIMEOUT",
    "MAX_HEAD",
    "MAX_PENDING",
    "Reply",
    "SignedServer",
    "SignedService",
    "StreamOpener",
    "StreamServe",
)

logger = logging.getLogger("contextthreads.fluster")

#: (HTTP status, body) as a server's dispatch function returns it.
Reply = Tuple[int, bytes]
#: What a server's stream opener returns: a function that serves the stream, or a refusal.
StreamServe = Callable[[FrameChannel], None]
StreamOpener = Callable[[str, bytes], Union[StreamServe, Reply]]

#: The most a connection may send before its signature is checked: request line and headers.
MAX_HEAD = 16 * 1024
#: Seconds a connection has to complete its TLS handshake and send its head.
HEAD_TIMEOUT = 10.0
#: Connections a server lets wait for their head at once; a new one beyond drops the oldest.
MAX_PENDING = 128


class _Handler(BaseHTTPRequestHandler):
    server: SignedServer
    protocol_version = "HTTP/1.0"
    # Answer even what is not HTTP with a status line, and say no more than the status.
    default_request_version = "HTTP/1.0"
    error_message_format = "%(code)d %(message)s\n"
    error_content_type = "text/plain"
    # Once a request has proved itself: bounds each read of its body, and each write.
    timeout = 30
    # Replies and stream frames are small writes answered at once: don't hold them back.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        deadline = Deadline(self.server.head_timeout)
        if isinstance(self.connection, ssl.SSLSocket):
            tls_handshake(self.connection, deadline)
        self.rfile.close()
        self._raw = GuardedReader(self.connection, deadline, MAX_HEAD)
        # The stdlib's 8 KiB, not a client's 64: it counts against every waiting connection.
        self.rfile = buffered(self._raw, io.DEFAULT_BUFFER_SIZE)
        self._nonce = b""

    def __getattr__(self, name: str) -> Any:
        # Every method, known or not, gets the same treatment: no signature, 401.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)

    def _reply(self, status: int, body: bytes, *, signed: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if signed:
            signature = reply_signature(self.server.secret, self._nonce, status, body)
            self.send_header(SIGNATURE_HEADER, signature)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _refuse(self, status: int, reason: str) -> None:
        # Unsigned: the peer has not shown it holds the secret, or its request is unusable.
        self.close_connection = True
        logger.debug(
            "%s: refused %s from %s: %s", self.server.name, status, self.client_address, reason
        )
        self._reply(status, f"{reason}\n".encode(), signed=False)

    def _handle(self) -> None:
        if self._raw.exhausted:
            self._refuse(431, "request head too large")
            return
        server = self.server
        head = check_request_head(
            server.secret, self.command, self.path, self.headers, server.hosts
        )
        if isinstance(head, str):
            self._refuse(401, head)
            return
        if head.length > MAX_BODY:
            self._refuse(413, "body too large")
            return
        refusal = server.replay_guard.admit(head.timestamp, head.nonce)
        if refusal is not None:
            self._refuse(401, refusal)
            return
        self._nonce = head.nonce
        if not server.admission.proved(self.request):
            return  # dropped meanwhile, to make room for newer connections
        self._raw.release()
        self.connection.settimeout(self.timeout)
        body = self.rfile.read(head.length)
        if len(body) != head.length or hashlib.sha256(body).hexdigest() != head.digest:
            self._refuse(400, "the body does not match its signed digest")
            return
        path = urllib.parse.urlsplit(self.path).path
        if self.headers.get("Upgrade", "").strip() == STREAM_PROTOCOL:
            self._upgrade(path, body)
            return
        try:
            status, reply = server.dispatch(self.command, path, body)
        except Exception:
            logger.exception("fluster server %s failed on %s %s", server.name, self.command, path)
            status, reply = 500, b"internal server error\n"
        self._reply(status, reply)

    def _upgrade(self, path: str, body: bytes) -> None:
        self.close_connection = True
        opener = self.server.open_stream
        if opener is None or self.command != "POST":
            self._reply(404, b"no streams here\n")
            return
        try:
            opened = opener(path, body)
        except Exception:
            logger.exception(
                "fluster server %s failed to open a stream on %s", self.server.name, path
            )
            opened = 500, b"internal server error\n"
        if isinstance(opened, tuple):
            self._reply(*opened)
            return
        handshake = ServerHandshake(self.server.secret, self._nonce)
        self.send_response(101)
        for name, value in handshake.headers():
            self.send_header(name, value)
        self.end_headers()
        # A stream idles between calls for as long as its (authenticated) client likes; a
        # client that vanished without a word is found out by keepalive probes.
        keep_alive(self.connection)
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
    """A threading HTTP server that answers only requests signed with ``secret`` for it.

    It binds in the constructor, so ``port`` is the port actually bound (pass
    0 for any free one) and nobody can take it between binding and serving.
    Requests must name it as ``Host``: its ``address`` (with
    ``advertise_host``), or the address it is bound to. ``dispatch(method,
    path, body)`` runs on a ``ContextThread`` per request, in a copy of the
    context current at construction, and returns ``(status, body)``; its
    replies are signed. A request upgrading to a frame stream goes to
    ``open_stream(path, body)`` instead, which returns the function that
    serves the stream on that thread, or ``(status, body)`` to refuse it.
    With ``ssl_context`` (holding its certificate and key) it serves TLS.
    ``start()`` serves from a background thread; ``close()`` stops serving
    and frees the port. Both are safe to call from any thread other than the
    serving one.
    """

    daemon_threads = True
    block_on_close = False
    # socketserver's backlog of 5 resets concurrent callers; the kernel caps this one.
    request_queue_size = socket.SOMAXCONN
    head_timeout = HEAD_TIMEOUT
    max_pending = MAX_PENDING

    def __init__(
        self,
        host: str,
        port: int,
        secret: str,
        dispatch: Callable[[str, str, bytes], Reply],
        name: str,
        open_stream: StreamOpener | None = None,
        *,
        advertise_host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not secret:
            raise ValueError("a SignedServer needs a non-empty secret")
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.secret = secret
        self.dispatch = dispatch
        self.open_stream = open_stream
        self.name = name
        self.ssl_context = ssl_context
        self.replay_guard = ReplayGuard()
        self._base_context = contextvars.copy_context()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.admission = Admission(self.max_pending)
        super().__init__((host, port), _Handler)
        self.address = self.url(advertise_host)
        names = {self.address, self.url()}
        if host in ("127.0.0.1", "::1", "localhost"):
            names.add(self.url("localhost"))
        self.hosts = frozenset(urllib.parse.urlsplit(url).netloc.lower() for url in names)

    @property
    def host(self) -> str:
        """Return the address the socket is bound to."""
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        """Return the port the socket is bound to."""
        return int(self.server_address[1])

    def url(self, host: str | None = None) -> str:
        """Return ``http(s)://host:port``, showing ``host`` instead of the bound one if given."""
        shown = host or self.host
        if ":" in shown:
            shown = f"[{shown}]"
        scheme = "http" if self.ssl_context is None else "https"
        return f"{scheme}://{shown}:{self.port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            # No I/O here: the handshake happens on the request's thread, against its deadline.
            try:
                request = self.ssl_context.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
            except OSError:
                self.shutdown_request(request)
                return
        if not self.admission.admit(request):
            logger.debug("%s: no room for another connection; refused one", self.name)
            self.shutdown_request(request)
            return
        thread = ContextThread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"{self.name}-request",
            daemon=True,
            context=self._base_context.copy(),
        )
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        self.admission.release(request)
        super().shutdown_request(request)

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

    For classes that set ``_server`` (the SignedServer) in their constructor.
    ``start()`` and ``close()`` are thread-safe.
    """

    _server: SignedServer

    @property
    def port(self) -> int:
        """Return the port actually bound."""
        return self._server.port

    @property
    def address(self) -> str:
        """Return ``http(s)://host:port`` with the advertised host (else the bound one)."""
        return self._server.address

    def start(self: _Service) -> _Service:
        """Serve from a background thread; return self. ``with`` calls it, and ``close()``."""
        self._server.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.close()

    def __enter__(self: _Service) -> _Service:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
