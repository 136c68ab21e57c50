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

import threading
from typing import Any, Callable

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
from ._http import Reply, SignedServer, SignedService, StreamServe, post
from ._stream import FrameChannel, connect

__all__ = ("ActorClient", "ActorServer")

_CALL_PATH = "/call"
_STREAM_PATH = "/stream"


class ActorServer(SignedService):
    """Host named objects and serve calls to their public methods over signed HTTP.

    Binds ``host`` (127.0.0.1 by default) and ``port`` (0: any free port) in
    the constructor; ``port`` and ``address`` tell what was bound. The secret
    defaults to the current FlusterContext's. Each call runs on its own
    ``ContextThread`` in a copy of the context current when the server was
    made, so actor methods see the job's FlusterContext; actors must be
    thread-safe. ``register`` and ``close`` are thread-safe.
    """

    def __init__(
        self,
        secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        advertise_host: str | None = None,
    ) -> None:
        self._actors: dict[str, object] = {}
        self._lock = threading.Lock()
        self._advertise_host = advertise_host
        self._server = SignedServer(
            host,
            port,
            fluster_ctx().secret if secret is None else secret,
            self._dispatch,
            "fluster-actor-server",
            self._open_stream,
        )

    def register(self, name: str, actor: object) -> None:
        """Serve ``actor``'s public methods under ``name``, replacing any actor of that name."""
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

    The secret defaults to the current FlusterContext's. Thread-safe: every
    call has its own connection.
    """

    def __init__(
        self,
        url: str,
        actor_name: str,
        *,
        secret: str | None = None,
        timeout: float | None = 30.0,
    ) -> None:
        self.url = url
        self.actor_name = actor_name
        self.timeout = timeout
        self._secret = fluster_ctx().secret if secret is None else secret

    def __repr__(self) -> str:
        return f"ActorClient({self.url!r}, {self.actor_name!r})"

    def send(self, body: bytes, timeout: float | None = None) -> bytes:
        """POST an ``encode_call()`` body; return the verified reply. Raises ``RpcError``."""
        return post(
            self.url, _CALL_PATH, body, self._secret, self.timeout if timeout is None else timeout
        )

    def stream(self, method: str, timeout: float | None = None) -> FrameChannel:
        """Open a frame stream served by the actor's ``method(channel)``; return our end.

        ``timeout`` (default: the client's) bounds connecting and the
        handshake, and stays on the channel until changed. Raises ``RpcError``.
        """
        return connect(
            self.url,
            _STREAM_PATH,
            self._secret,
            encode_stream_target(self.actor_name, method),
            self.timeout if timeout is None else timeout,
        )

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Return ``actor.method(*args, **kwargs)`` run remotely, or raise what it raised."""
        ok, value = decode_reply(self.send(encode_call(self.actor_name, method, args, kwargs)))
        if ok:
            return value
        raise value
