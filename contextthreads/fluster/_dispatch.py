"""WorkerDispatcher: the thread that feeds one worker of a WorkerPool."""

from __future__ import annotations

import enum
import logging
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from .._thread import ContextThread
from ._actor import ActorClient, decode_reply, encode_call
from ._executor import worker_actor_name
from ._http import RpcError

if TYPE_CHECKING:
    from ._pool import WorkerPool

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
        self.current_task_id: str | None = None
        self.tasks_completed = 0
        self.tasks_failed = 0
        self.error: str | None = None

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
    """Feed one worker: find its endpoint, then send it tasks from the pool's queue, one at a time.

    Runs on a ``thread_class`` thread (``ContextThread``), started in the
    context of whoever calls ``start()``: the resolver reads the
    FlusterContext from there. All state it changes lives in the pool, under
    the pool's lock.
    """

    thread_class: ClassVar[Callable[..., threading.Thread]] = ContextThread

    def __init__(self, pool: WorkerPool, worker: _Worker) -> None:
        self._pool = pool
        self._worker = worker
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
            if not self._discover():
                return
            while True:
                task = self._pool._next_task(self._worker)
                if task is _STOP:
                    return
                if task is None:
                    code = self._pool._exit_code(self._worker)
                    if code is not None:
                        self._pool._worker_failed(self._worker, f"job exited with code {code}")
                        return
                    continue
                assert isinstance(task, _Task)
                self._execute(task)
        except BaseException as exc:
            logger.exception("dispatcher for %s crashed", self._worker.worker_id)
            self._pool._worker_failed(self._worker, f"dispatcher crashed: {exc!r}")
            raise

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

    def _execute(self, task: _Task) -> None:
        worker = self._worker
        assert worker.endpoint_url is not None
        client = ActorClient(
            worker.endpoint_url,
            worker.worker_name,
            secret=self._pool._secret,
            timeout=self._pool._timeout,
        )
        try:
            reply = client.send(encode_call(worker.worker_name, "execute", (task.payload,), {}))
        except Exception as exc:  # RpcError, or anything else: the task did not come back
            self._pool._task_lost(worker, task, exc)
            return
        try:
            ok, value = decode_reply(reply)
        except Exception as exc:  # the result or exception does not unpickle here
            ok, value = False, exc
        self._pool._task_finished(worker, task, ok, value)


_STOP = object()
