"""Helpers shared by the fluster tests: the one wait bound, the task gate, log watching."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import queue
import signal
import socket
import struct
import sys
import threading
from typing import Any

from bounds import LONG_WAIT

from contextthreads.fluster import FrameChannel

#: Bound on every wait in these tests: they start worker processes and talk over sockets.
WAIT = LONG_WAIT
#: The cluster secret of the in-process servers (controller, actors) the tests start.
SECRET = "fluster-test-secret"

#: Whether a plain ``threading.Thread`` starts in a copy of its starter's context here
#: (3.14+ with ``-X thread_inherit_context=1``): then the seed bug cannot happen.
PLAIN_THREADS_INHERIT = bool(getattr(sys.flags, "thread_inherit_context", 0))


def joined(thread: threading.Thread) -> threading.Thread:
    """Join ``thread`` (bounded) and check it finished."""
    thread.join(WAIT)
    assert not thread.is_alive()
    return thread


class Gate:
    """A listening socket tasks connect to (``tasks.report_and_wait``).

    ``arrive()`` returns the pid a task reported, which proves the task is
    running; ``release()`` lets one arrived task finish; ``kill()`` SIGKILLs
    its process instead.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(WAIT)
        self._arrived: dict[int, socket.socket] = {}

    @property
    def address(self) -> tuple[str, int]:
        """Return the (host, port) tasks connect to."""
        host, port = self._listener.getsockname()[:2]
        return str(host), int(port)

    def arrive(self) -> int:
        """Wait (bounded) for the next task to connect; return its pid."""
        conn, _ = self._listener.accept()
        conn.settimeout(WAIT)
        line = b""
        while not line.endswith(b"\n"):
            chunk = conn.recv(64)
            if not chunk:
                raise AssertionError("a task connected and hung up without reporting")
            line += chunk
        pid = int(line)
        self._arrived[pid] = conn
        return pid

    def release(self, pid: int) -> None:
        """Let the task running in ``pid`` finish."""
        self._arrived.pop(pid).sendall(b"g")

    def kill(self, pid: int) -> None:
        """SIGKILL the worker process running the arrived task ``pid``."""
        os.kill(pid, signal.SIGKILL)
        self._arrived.pop(pid).close()

    def close(self) -> None:
        """Hang up on every arrived task (which lets it fail) and stop listening."""
        for conn in self._arrived.values():
            conn.close()
        self._listener.close()


class LogWatcher(logging.Handler):
    """Set an event when a record containing ``text`` is logged by contextthreads.fluster."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def pid_alive(pid: int) -> bool:
    """Return True if a process with this pid exists (and is not a zombie of ours)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        return True


class Tripwire:
    """Unpickling this creates a directory: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


class Echo:
    """An actor whose stream method echoes frames until its client hangs up."""

    def __init__(self) -> None:
        self.ended: queue.Queue[str] = queue.Queue()

    def echo(self, channel: FrameChannel) -> None:
        outcome = "returned"
        try:
            while True:
                body = channel.recv()
                if body is None:
                    return
                channel.send(body)
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self.ended.put(outcome)

    def _private(self, channel: FrameChannel) -> None:
        channel.send(b"private")


def frame(key: bytes, direction: bytes, counter: int, body: bytes) -> bytes:
    """Build a frame by hand: length | HMAC(key, direction + counter (8 bytes) + body) | body."""
    mac = hmac.new(key, direction + struct.pack("!Q", counter) + body, hashlib.sha256).digest()
    return struct.pack("!I", len(body)) + mac + body
