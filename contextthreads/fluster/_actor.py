"""Actors over signed HTTP: a server hosting named objects, and a client calling their methods.

A method may also take over a connection: ``ActorClient.stream(method)``
opens a signed frame stream (``_stream``) served by ``method(channel)`` on
the server, for many calls over one connection.

Arguments, results and exceptions travel as cloudpickle (see ``_codec``). A
remote exception is raised on the caller with its own type and message, its
remote traceback chained as ``__cause__``; one that cannot be pickled arrives
as ``RemoteError``. Infrastructure failures raise ``RpcError`` subclasses.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any, Callable

from ._client import post
from ._codec import (
    decode_call,
    decode_reply,
    decode_stream_target,
    encode_call,
    encode_error,
    encode_result,
    encode_stream_target,
)
from ._context import fluster_ctx
from ._http import Reply, SignedServer, SignedService, StreamServe
from ._stream import FrameChannel, connect

__all__ = ("ActorClient", "ActorServer")

_CALL_PATH = "/call"
_STREAM_PATH = "/stream"


class ActorServer(SignedService):
    """Host named objects and serve calls to their public methods over signed HTTP.

    The socket is bound in the constructor; ``port`` and ``address`` tell what
    was bound. Call ``start()`` (or use ``with``) to serve. Each call runs on
    its own ``ContextThread`` in a copy of the context current when the
    server was made, so actor methods see the job's FlusterContext; actors
    must be thread-safe. ``register()``, ``start()`` and ``close()`` are
    thread-safe. Arguments, results and exceptions travel as cloudpickle,
    and a method's exception re-raises on the caller with its own type.

    Args:
        secret: The cluster secret requests must be signed with; by default
            the current FlusterContext's.
        host: The address to bind (127.0.0.1 by default).
        port: The port to bind; 0 picks a free one.
        advertise_host: The name callers reach it by, when ``host`` is a
            wildcard; it is also the ``Host`` signed requests must name.
        ssl_context: A server context holding a certificate and its key: it
            then serves TLS, at an ``https://`` address.

    Raises:
        RuntimeError: Without ``secret`` and without a current FlusterContext.
    """

    def __init__(
        self,
        secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        advertise_host: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._actors: dict[str, object] = {}
        self._lock = threading.Lock()
        self._server = SignedServer(
            host,
            port,
            fluster_ctx().secret if secret is None else secret,
            self._dispatch,
            "fluster-actor-server",
            self._open_stream,
            advertise_host=advertise_host,
            ssl_context=ssl_context,
        )

    def register(self, name: str, actor: object) -> None:
        """Serve ``actor``'s public methods under ``name``, replacing any actor of that name.

        Args:
            name: The name callers give ``ActorClient``.
            actor: Any object; its methods whose names do not start with
                ``_`` can be called, and must be thread-safe.
        """
        with self._lock:
            self._actors[name] = actor

    def _method(self, actor_name: object, method_name: object) -> Callable[..., Any]:
        with self._lock:
            actor = self._actors.get(actor_name) if isinstance(actor_name, str) else None
        if actor is None:
            raise LookupError(f"no actor named {actor_name!r} on this server")
        method = None
        if isinstance(method_name, str) and not method_name.startswith("_"):
            method = getattr(actor, method_name)
        if not callable(method):
            raise AttributeError(f"{method_name!r} is not a public method of {actor_name!r}")
        return method  # type: ignore[no-any-return]

    def _dispatch(self, method: str, path: str, body: bytes) -> Reply:
        if path != _CALL_PATH or method != "POST":
            return 404, b"not found\n"

        try:
            actor_name, method_name, args, kwargs = decode_call(body)
            value = self._method(actor_name, method_name)(*args, **kwargs)
        except BaseException as exc:
            return 200, encode_error(exc)
        return 200, encode_result(value, f"{actor_name}.{method_name}()")

    def _open_stream(self, path: str, body: bytes) -> StreamServe | Reply:
        if path != _STREAM_PATH:
            return 404, b"not found\n"
        try:
            actor_name, method_name = decode_stream_target(body)
            serve: StreamServe = self._method(actor_name, method_name)
        except Exception as exc:
            return 404, f"{type(exc).__name__}: {exc}\n".encode("utf-8", "replace")
        return serve


class ActorClient:
    """Call the methods of one actor at a known URL, each call bounded by ``timeout`` seconds.

    Thread-safe: every call has its own connection.

    Args:
        url: The actor server's ``http://`` or ``https://`` address
            (``ResolvedEndpoint.url``).
        actor_name: The name the actor was registered under.
        secret: The cluster secret requests are signed with; by default the
            current FlusterContext's.
        timeout: Seconds for each whole call (connecting, any TLS handshake,
            sending, and every wait for the answer); None waits forever.
        ssl_context: The client context for an ``https://`` URL; by default
            one trusting ``$FLUSTER_TLS_CA``, else the system's CAs.

    Raises:
        RuntimeError: Without ``secret`` and without a current FlusterContext.
    """

    def __init__(
        self,
        url: str,
        actor_name: str,
        *,
        secret: str | None = None,
        timeout: float | None = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.actor_name = actor_name
        self.timeout = timeout
        self._secret = fluster_ctx().secret if secret is None else secret
        self._ssl_context = ssl_context

    def __repr__(self) -> str:
        return f"ActorClient({self.url!r}, {self.actor_name!r})"

    def send(self, body: bytes, timeout: float | None = None) -> bytes:
        """POST an encoded call and return the verified reply, still encoded.

        ``call()`` encodes and decodes around it; a dispatcher encodes once and
        sends many times.

        Args:
            body: The call, as the package's codec encodes it.
            timeout: Seconds for the whole call; None means the client's.

        Raises:
            RpcError: A subclass saying what failed (auth, connection,
                protocol, timeout).
        """
        return post(
            self.url,
            _CALL_PATH,
            body,
            self._secret,
            self.timeout if timeout is None else timeout,
            self._ssl_context,
        )

    def stream(self, method: str, timeout: float | None = None) -> FrameChannel:
        """Open a frame stream served by the actor's ``method(channel)``; return our end.

        Args:
            method: The actor's method that serves the stream; it is called
                with the server's ``FrameChannel`` on a thread of its own.
            timeout: Bounds connecting and the whole handshake, then stays on
                the channel, bounding each send and receive, until changed
                (``FrameChannel.settimeout()``); None means the client's.

        Raises:
            RpcError: A subclass saying what failed.
        """
        return connect(
            self.url,
            _STREAM_PATH,
            self._secret,
            encode_stream_target(self.actor_name, method),
            self.timeout if timeout is None else timeout,
            self._ssl_context,
        )

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Return ``actor.method(*args, **kwargs)`` run remotely, or raise what it raised.

        Args:
            method: The name of a public method of the actor.
            *args: Its positional arguments; they must pickle.
            **kwargs: Its keyword arguments; they must pickle.

        Raises:
            RpcError: If the call got no usable answer (the infrastructure
                failed, not the method).
            Exception: Whatever the method raised, with its own type; one that
                cannot be sent back as itself arrives as a ``RemoteError``.
        """
        ok, value = decode_reply(self.send(encode_call(self.actor_name, method, args, kwargs)))
        if ok:
            return value
        raise value
