"""WorkerDispatcher: the thread that feeds one worker of a WorkerPool."""

from __future__ import annotations

import collections
import enum
import logging
import socket
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from .._thread import ContextThread
from ._actor import ActorClient, decode_reply
from ._executor import worker_actor_name
from ._http import RpcConnectionError, RpcError, as_rpc_error

if TYPE_CHECKING:
    from ._pool import WorkerPool
    from ._stream import FrameChannel

__all__ = ("WorkerDispatcher", "WorkerStatus")

logger = logging.getLogger("contextthreads.fluster")


class WorkerStatus(enum.Enum):
    """Where a worker is in its life, as its dispatcher sees it."""

    PENDING = "PENDING"  # launched, endpoint not registered yet
    IDLE = "IDLE"
    BUSY = "BUSY"
    FAILED = "FAILED"  # gone for good: its dispatcher has stopped


class _Task:
    __slots__ = ("fn_name", "future", "payload", "retries_left", "started", "task_id")

    def __init__(self, task_id: str, fn_name: str, payload: bytes, retries: int) -> None:
        self.task_id = task_id
        self.fn_name = fn_name
        self.payload = payload
        self.future: Future[Any] = Future()
        self.retries_left = retries
        self.started = False


class _Worker:
    """A worker's state as the pool sees it. Guarded by the pool's lock."""

    def __init__(self, index: int, pool_id: str, job_id: str) -> None:
        self.worker_id = f"worker-{index}"
        self.worker_name = worker_actor_name(pool_id, index)
        self.job_id = job_id
        self.status = WorkerStatus.PENDING
        self.endpoint_url: str | None = None
        self.pid: int | None = None
        #: Tasks sent to the worker and not answered yet, oldest (the running one) first.
        self.in_flight: collections.deque[_Task] = collections.deque()
        self.tasks_completed = 0
        self.tasks_failed = 0
        self.error: str | None = None

    @property
    def current_task_id(self) -> str | None:
        """Return the id of the task the worker is running, if any."""
        return self.in_flight[0].task_id if self.in_flight else None

    def describe(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "worker_name": self.worker_name,
            "job_id": self.job_id,
            "status": self.status.value,
            "endpoint_url": self.endpoint_url,
            "pid": self.pid,
            "current_task_id": self.current_task_id,
            "tasks_completed": self.tasks_completed,
            "tasks_failed": self.tasks_failed,
            "error": self.error,
        }


class WorkerDispatcher:
    """Feed one worker: find its endpoint, then stream it tasks from the pool's queue.

    Runs on a ``thread_class`` thread (``ContextThread``), started in the
    context of whoever calls ``start()``: the resolver reads the
    FlusterContext from there. Tasks go over one signed frame stream to the
    worker, which runs them one at a time. While a task runs, the next may
    already wait in the connection (up to ``max_in_flight`` in all), but only
    when no other worker is idle and it is small, so the worker never waits
    for the network between tasks. All state it changes lives in the pool,
    under the pool's lock.
    """

    thread_class: ClassVar[Callable[..., threading.Thread]] = ContextThread
    #: Tasks handed to one worker at once: the running one, and one waiting.
    max_in_flight: ClassVar[int] = 2
    #: Largest serialized task sent to a busy worker; bigger ones wait for an idle one.
    max_waiting_size: ClassVar[int] = 32 * 1024

    def __init__(self, pool: WorkerPool, worker: _Worker) -> None:
        self._pool = pool
        self._worker = worker
        self._channel: FrameChannel | None = None
        # When the oldest task in flight started to count against the timeout.
        self._clock = 0.0
        self._thread = self.thread_class(
            target=self._run,
            name=f"fluster-dispatch-{pool.pool_id}-{worker.worker_id}",
            daemon=True,
        )

    def start(self) -> None:
        """Start the dispatch thread in a copy of the caller's context."""
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; return whether it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            if self._discover():
                self._dispatch()
        except BaseException as exc:
            logger.exception("dispatcher for %s crashed", self._worker.worker_id)
            self._pool._worker_failed(self._worker, f"dispatcher crashed: {exc!r}")
            raise
        finally:
            if self._channel is not None:
                self._channel.close()

    def _dispatch(self) -> None:
        pool, worker = self._pool, self._worker
        while True:
            if not worker.in_flight:
                task = pool._next_task(worker)
                if task is _STOP:
                    return
                if task is None:
                    code = pool._exit_code(worker)
                    if code is not None:
                        pool._worker_failed(worker, f"job exited with code {code}")
                        return
                    continue
                assert isinstance(task, _Task)
                self._clock = time.monotonic()
            else:
                task = None
                if len(worker.in_flight) < self.max_in_flight:
                    task = pool._next_task_nowait(worker, self.max_waiting_size)
                if task is None:
                    # Nothing more to hand over: wait for the oldest answer.
                    if not self._receive():
                        return
                    continue
            if not self._send(task):
                return

    def _discover(self) -> bool:
        delay = 0.02
        while not self._pool._stopping.is_set():
            try:
                result = self._pool._resolver.resolve(self._worker.worker_name)
            except RpcError as exc:
                logger.debug("resolving %s: %s (will retry)", self._worker.worker_name, exc)
            except Exception as exc:
                self._pool._worker_failed(
                    self._worker, f"resolving {self._worker.worker_name!r} failed: {exc!r}"
                )
                return False
            else:
                if not result.is_empty:
                    return self._pool._worker_ready(self._worker, result.first())
            code = self._pool._exit_code(self._worker)
            if code is not None:
                self._pool._worker_failed(
                    self._worker, f"job exited with code {code} before registering"
                )
                return False
            self._pool._stopping.wait(delay)
            delay = min(delay * 2, 0.5)
        return False

    def _send(self, task: _Task) -> bool:
        # Returns whether the worker is still usable; if not, its tasks are settled.
        worker = self._worker
        if self._channel is None:
            assert worker.endpoint_url is not None
            try:
                self._channel = ActorClient(
                    worker.endpoint_url,
                    worker.worker_name,
                    secret=self._pool._secret,
                    timeout=self._pool._timeout,
                ).stream("serve")
            except Exception as exc:  # RpcError: the worker cannot be reached
                return self._lost(exc, delivered=False)
        try:
            # A send blocks only while the worker, busy with a task, reads nothing.
            self._channel.settimeout(self._pool._timeout)
            self._channel.send(task.payload)
        except Exception as exc:  # OSError: the worker is gone
            return self._lost(exc)
        return True

    def _receive(self) -> bool:
        # Settles the oldest task in flight; returns whether the worker is still usable.
        assert self._channel is not None
        try:
            remaining = self._clock + self._pool._timeout - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            self._channel.settimeout(remaining)
            reply = self._channel.recv()
            if reply is None:
                raise RpcConnectionError(f"{self._worker.endpoint_url} closed the connection")
        except Exception as exc:
            return self._lost(exc)
        # The next task in flight has been waiting in the connection; it runs from now.
        self._clock = time.monotonic()
        try:
            ok, value = decode_reply(reply)
        except Exception as exc:  # the result or exception does not unpickle here
            ok, value = False, exc
        self._pool._task_finished(self._worker, ok, value)
        return True

    def _lost(self, exc: Exception, *, delivered: bool = True) -> bool:
        # The worker cannot be used any more: fail it, settling what it held.
        error = as_rpc_error(exc, str(self._worker.endpoint_url), self._pool._timeout)
        self._pool._worker_failed(
            self._worker, f"{type(error).__name__}: {error}", delivered=delivered
        )
        return False


_STOP = object()
