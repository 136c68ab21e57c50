"""Sockets read against a deadline: one bound for a whole exchange, not for each read.

A per-read timeout lets a peer that drips a byte at a time hold a
connection for ever. Here a ``Deadline`` is set once for what must be done
(connecting, a TLS handshake, a request's head, a whole call) and each read
waits only for what is left of it. ``GuardedReader`` also counts what a peer
may send before it has proved it holds the secret.
"""

from __future__ import annotations

import io
import select
import socket
import ssl
import time
from typing import cast

__all__ = (
    "READ_BUFFER",
    "Deadline",
    "GuardedReader",
    "buffered",
    "keep_alive",
    "open_connection",
    "tls_handshake",
)

#: Bytes a client's buffered reader asks the socket for at once (a server's: 8 KiB).
READ_BUFFER = 64 * 1024


class Deadline:
    """A moment ``timeout`` seconds from now (None: never); ``remaining()`` tells what is left."""

    __slots__ = ("_end", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Return the seconds left (None: no bound); raise ``socket.timeout`` once none are."""
        if self._end is None:
            return None
        left = self._end - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        return left


class GuardedReader(io.RawIOBase):
    """The raw reading side of a socket, for an ``io.BufferedReader``.

    While ``deadline`` is set, each read waits for what is left of it (the
    socket's own timeout otherwise). While ``budget`` is set, at most that
    many more bytes are read, and then the reader reports the end of the
    stream and sets ``exhausted``. Closing it leaves the socket open.
    """

    def __init__(
        self, sock: socket.socket, deadline: Deadline | None = None, budget: int | None = None
    ) -> None:
        super().__init__()
        self.deadline = deadline
        self.budget = budget
        self.exhausted = False
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.budget is None and self.deadline is None:
            return self._sock.recv_into(buffer)  # a stream's frames: the hot path
        view = memoryview(buffer)
        if self.budget is not None:
            if self.budget <= 0:
                self.exhausted = True
                return 0
            view = view[: self.budget]
        if self.deadline is not None:
            self._sock.settimeout(self.deadline.remaining())
        count = self._sock.recv_into(view)
        if self.budget is not None:
            self.budget -= count
        return count

    def release(self) -> None:
        """Lift the deadline and the budget: the socket's timeout bounds each read from now."""
        self.deadline = None
        self.budget = None


def buffered(raw: GuardedReader, size: int = READ_BUFFER) -> io.BufferedReader:
    """Return a reader over ``raw`` buffering ``size`` bytes."""
    return io.BufferedReader(cast(io.RawIOBase, raw), size)


def keep_alive(sock: socket.socket) -> None:
    """Have the kernel probe an idle connection, so a peer that vanished is noticed in minutes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # Linux names: probe after 60 s idle, every 15 s, give up after 4 unanswered (2 minutes).
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def tls_handshake(sock: ssl.SSLSocket, deadline: Deadline) -> None:
    """Complete the TLS handshake of ``sock`` before ``deadline``, however the peer paces it.

    Raises ``socket.timeout`` when time runs out, ``ssl.SSLError`` (an
    ``OSError``) when the handshake fails. The socket is left blocking.
    """
    sock.setblocking(False)
    try:
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                ready = select.select([sock], [], [], deadline.remaining())[0]
            except ssl.SSLWantWriteError:
                ready = select.select([], [sock], [], deadline.remaining())[1]
            if not ready:
                raise socket.timeout("timed out")
    finally:
        sock.setblocking(True)


def open_connection(
    host: str,
    port: int,
    deadline: Deadline,
    ssl_context: ssl.SSLContext | None = None,
) -> socket.socket:
    """Connect to ``host:port`` (through TLS with ``ssl_context``) before ``deadline``.

    Raises ``OSError`` (``socket.timeout`` included) on failure; the socket
    is closed then.
    """
    sock = socket.create_connection((host, port), deadline.remaining())
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(
                sock, server_hostname=host, do_handshake_on_connect=False
            )
            tls_handshake(sock, deadline)
    except BaseException:
        sock.close()
        raise
    return sock
