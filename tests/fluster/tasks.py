"""Task functions the fluster tests send to worker processes.

They live in a module of their own, importable by name in the workers
(``LocalProcessLauncher`` hands workers the test process's ``sys.path``), so
they travel by reference, as library code would.
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
import threading
from typing import Any

from contextthreads.fluster import fluster_ctx

from .support import WAIT

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")

#: Bound on any wait inside a task: past the test's own (``WAIT``), so the test fails first,
#: and no worker is ever left hanging.
TASK_WAIT = 2 * WAIT


class TaskError(Exception):
    """An exception type of our own, to check that types survive the trip."""


class Unpicklable(Exception):
    """An exception that cannot be pickled: it holds a lock."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def square(x: int) -> int:
    """Return x squared."""
    return x * x


def whoami() -> dict[str, Any]:
    """Return the job id, namespace and pid of the worker running the task."""
    ctx = fluster_ctx()
    return {"job_id": ctx.job_id, "namespace": ctx.namespace, "pid": os.getpid()}


def raise_value_error(n: int) -> None:
    """Raise ValueError naming ``n``."""
    raise ValueError(f"bad value {n}")


def raise_task_error() -> None:
    """Raise our own exception type."""
    raise TaskError("custom failure")


def raise_unpicklable() -> None:
    """Raise an exception that cannot travel back as itself."""
    raise Unpicklable("cannot pickle me")


def read_vars() -> tuple[str, str]:
    """Return what REQUEST_ID and TENANT hold in the worker ("<unset>" if nothing)."""
    return REQUEST_ID.get(), TENANT.get("<unset>")


def set_and_read_vars(value: str) -> tuple[str, str]:
    """Set REQUEST_ID and TENANT in the task, then read them back."""
    REQUEST_ID.set(value)
    TENANT.set(value)
    return read_vars()


def report_and_wait(address: tuple[str, int], result: Any = None) -> Any:
    """Tell the test at ``address`` our pid, wait for its go-ahead byte, then return ``result``.

    The test knows the task is running once it has read the pid, and may kill
    this process instead of answering.
    """
    with socket.create_connection(address, timeout=TASK_WAIT) as conn:
        conn.sendall(f"{os.getpid()}\n".encode())
        if conn.recv(1) != b"g":
            raise RuntimeError("the test hung up instead of saying go")
    return result if result is not None else os.getpid()


def write_job_info(path: str) -> None:
    """A job entrypoint: write what the job sees of itself to ``path`` as JSON."""
    ctx = fluster_ctx()
    with open("/proc/self/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    info = {
        "job_id": ctx.job_id,
        "namespace": ctx.namespace,
        "parent_job_id": ctx.parent_job_id,
        "secret_in_argv": any(ctx.secret.encode() in arg for arg in argv),
        "secret_in_environ": any(ctx.secret in value for value in os.environ.values()),
        "argv": [arg.decode() for arg in argv if arg],
        "pid": os.getpid(),
    }
    with open(path, "w") as f:
        json.dump(info, f)


def block_forever() -> None:
    """A job entrypoint that never returns on its own."""
    threading.Event().wait()


def report_then_block(address: tuple[str, int]) -> None:
    """A job entrypoint: tell the test at ``address`` our pid, then never return on our own."""
    with socket.create_connection(address, timeout=TASK_WAIT) as conn:
        conn.sendall(f"{os.getpid()}\n".encode())
    threading.Event().wait()
