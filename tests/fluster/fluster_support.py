"""Helpers shared by the fluster tests: the task gate, log watching, process checks."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

#: Bound on every wait in these tests. Generous: two busy cores start interpreters slowly.
WAIT = 30.0


class Gate:
    """A listening socket tasks connect to (``fluster_tasks.report_and_wait``).

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
