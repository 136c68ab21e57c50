"""WorkerPool: run callables on worker processes, one dispatcher thread per worker.

Each worker job hosts a task-executor actor and registers it with the
controller, inside the namespace of the job that created the pool. Each
``WorkerDispatcher`` runs on a ``ContextThread`` started in the pool
creator's context, so its resolver sees the creator's FlusterContext; on a
plain ``threading.Thread`` (before 3.14's inheritance flag) resolving would
raise ``RuntimeError``. Dispatchers take tasks from one shared queue.
"""

from __future__ import annotations

import collections
import contextvars
import itertools
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Sequence

from . import _pickle
from ._cluster import TERMINATE_GRACE, Entrypoint, FlusterClient
from ._context import check_job_name, fluster_ctx
from ._dispatch import _STOP, WorkerDispatcher, WorkerStatus, _Task, _Worker
from ._executor import serve_worker
from ._http import MAX_BODY
from ._resolver import ResolvedEndpoint, Resolver

if TYPE_CHECKING:
    from .._typing import P, T

__all__ = (
    "PoolBrokenError",
    "PoolShutdownError",
    "PoolStatus",
    "WorkerDispatcher",
    "WorkerFailedError",
    "WorkerPool",
    "WorkerPoolConfig",
    "WorkerStatus",
)

logger = logging.getLogger("contextthreads.fluster")

_MISSING = object()


class WorkerFailedError(RuntimeError):
    """A task was lost because the worker running it failed, and it had no retries left."""

    def __init__(self, message: str, *, worker_id: str, job_id: str, task_id: str) -> None:
        super().__init__(message)
        self.worker_id = worker_id
        self.job_id = job_id
        self.task_id = task_id

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {"worker_id": self.worker_id, "job_id": self.job_id, "task_id": self.task_id}
        return _rebuild_worker_failed, (str(self), fields)


def _rebuild_worker_failed(message: str, fields: dict[str, str]) -> WorkerFailedError:
    return WorkerFailedError(message, **fields)


class PoolBrokenError(RuntimeError):
    """Every worker of the pool has failed: nothing can run its tasks any more."""


class PoolShutdownError(RuntimeError):
    """The pool was shut down while the task was running, or before it could be retried."""


@dataclass(frozen=True)
class WorkerPoolConfig:
    """How many workers to launch and how to treat their tasks.

    ``max_retries``: how many times a task whose worker died is re-run on
    another worker (exceptions raised by the task itself are never retried).
    ``name_prefix``: start of the worker job names. ``context_vars``: the
    ``ContextVar``\\ s whose values at ``submit()`` travel with each task and
    are set around the call in the worker.
    """

    num_workers: int
    max_retries: int = 0
    name_prefix: str = "worker"
    context_vars: Sequence[contextvars.ContextVar[Any]] = ()

    def __post_init__(self) -> None:
        for name in ("num_workers", "max_retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, got {self.max_retries}")
        check_job_name(self.name_prefix, "name_prefix")
        variables = tuple(self.context_vars)
        for var in variables:
            if not isinstance(var, contextvars.ContextVar):
                raise TypeError(f"context_vars must hold ContextVars, not {type(var).__name__}")
        names = [var.name for var in variables]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"context_vars must have distinct names; repeated: {duplicates}")
        object.__setattr__(self, "context_vars", variables)


@dataclass(frozen=True)
class PoolStatus:
    """A consistent snapshot of a pool, taken under its lock."""

    pool_id: str
    num_workers: int
    workers_idle: int
    workers_busy: int
    workers_pending: int
    workers_failed: int
    tasks_queued: int
    tasks_completed: int
    tasks_failed: int
    worker_details: list[dict[str, Any]] = field(default_factory=list)


class WorkerPool:
    """Run callables on a pool of worker processes launched as jobs of ``client``'s cluster.

    Create and enter it in a FlusterContext (``fluster_ctx_scope``): the
    worker jobs are children of that job, register in its namespace, and
    the dispatchers, started on ``ContextThread``\\ s in that context, resolve
    there. ``timeout`` bounds each task's call to its worker: a task that
    takes longer counts as a worker failure. ``submit()``, ``map()``,
    ``status()``, ``wait_for_workers()`` and ``shutdown()`` are thread-safe;
    all worker state changes under one lock. Every future ends: with a
    result, the task's exception, a ``WorkerFailedError``,
    ``PoolBrokenError`` or ``PoolShutdownError``, or cancelled.
    """

    dispatcher_class: ClassVar[type[WorkerDispatcher]] = WorkerDispatcher
    #: The most a pickled task (callable, arguments, context values) may weigh.
    max_task_size: ClassVar[int] = MAX_BODY

    def __init__(
        self,
        client: FlusterClient,
        config: WorkerPoolConfig,
        timeout: float = 60.0,
        *,
        startup_timeout: float = 60.0,
        resolver: Resolver | None = None,
    ) -> None:
        if not isinstance(config, WorkerPoolConfig):
            raise TypeError(f"config must be a WorkerPoolConfig, not {type(config).__name__}")
        if timeout <= 0 or startup_timeout <= 0:
            raise ValueError("timeout and startup_timeout must be positive")
        self._client = client
        self._config = config
        self._timeout = float(timeout)
        self._startup_timeout = float(startup_timeout)
        self._resolver: Resolver = resolver if resolver is not None else client.resolver()
        self._pool_id = uuid.uuid4().hex[:8]
        self._lock = threading.Condition(threading.Lock())
        self._queue: collections.deque[_Task] = collections.deque()
        self._workers: list[_Worker] = []
        self._dispatchers: list[WorkerDispatcher] = []
        self._state = "new"
        self._stopping = threading.Event()
        self._task_ids = itertools.count()
        self._tasks_completed = 0
        self._tasks_failed = 0
        self._secret = ""

    def __repr__(self) -> str:
        return f"WorkerPool(pool_id={self._pool_id!r}, num_workers={self._config.num_workers})"

    @property
    def pool_id(self) -> str:
        """Return this pool's random id, part of every worker's name."""
        return self._pool_id

    @property
    def job_ids(self) -> list[str]:
        """Return the job ids of the workers launched so far."""
        with self._lock:
            return [worker.job_id for worker in self._workers]

    # -- life cycle ---------------------------------------------------------

    def __enter__(self) -> WorkerPool:
        self.start()
        try:
            self.wait_for_workers(min_workers=1, timeout=self._startup_timeout)
        except BaseException:
            self.shutdown(wait=False)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    def start(self) -> None:
        """Launch the worker jobs and start their dispatchers, in the current FlusterContext."""
        ctx = fluster_ctx()
        with self._lock:
            if self._state != "new":
                raise RuntimeError("a WorkerPool can be started only once")
            self._state = "starting"
        self._secret = ctx.secret
        try:
            for index in range(self._config.num_workers):
                job_id = self._client.submit(
                    Entrypoint(serve_worker, (self._pool_id, index)),
                    name=f"{self._config.name_prefix}-{self._pool_id}-{index}",
                )
                with self._lock:
                    self._workers.append(_Worker(index, self._pool_id, job_id))
        except BaseException:
            with self._lock:
                self._state = "shutdown"
            self._terminate_jobs()
            raise
        with self._lock:
            self._state = "running"
            self._dispatchers = [self.dispatcher_class(self, w) for w in self._workers]
        for dispatcher in self._dispatchers:
            dispatcher.start()
        logger.info("pool %s launched %d workers", self._pool_id, len(self._workers))

    def wait_for_workers(self, min_workers: int | None = None, timeout: float = 60.0) -> None:
        """Block until ``min_workers`` (default: all) workers are ready, at most ``timeout`` s.

        Raises ``TimeoutError`` when time runs out, and ``PoolBrokenError`` at
        once when too many workers have failed for the count ever to be met.
        """
        need = self._config.num_workers if min_workers is None else min_workers
        if not 1 <= need <= self._config.num_workers:
            raise ValueError(f"min_workers must be in 1..{self._config.num_workers}, got {need}")
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if self._state not in ("running", "starting"):
                    raise RuntimeError(f"pool {self._pool_id} is not running ({self._state})")
                ready = sum(
                    w.status in (WorkerStatus.IDLE, WorkerStatus.BUSY) for w in self._workers
                )
                alive = ready + sum(w.status is WorkerStatus.PENDING for w in self._workers)
                if ready >= need:
                    return
                if alive < need:
                    raise PoolBrokenError(
                        f"pool {self._pool_id}: only {alive} workers left, {need} needed; "
                        + self._failures_locked()
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"pool {self._pool_id}: {ready} of {need} workers ready after {timeout}s"
                    )
                self._lock.wait(remaining)

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None
    ) -> None:
        """Stop the pool and terminate its worker jobs; every future ends. Bounded in time.

        ``submit()`` raises ``RuntimeError`` from now on. With
        ``cancel_futures`` queued tasks are cancelled at once. With ``wait``
        the queue is drained and running tasks finish first, for at most
        ``timeout`` seconds (default: the pool's task timeout). Then queued
        tasks are cancelled, worker jobs terminated (tasks still running fail
        with ``PoolShutdownError``) and, with ``wait``, dispatchers joined.
        """
        with self._lock:
            first = self._state != "shutdown"
            was_running = self._state == "running"
            self._state = "shutdown"
            cancelled = self._drain_locked() if cancel_futures else []
            self._lock.notify_all()
        logger.info("pool %s: shutting down (wait=%s)", self._pool_id, wait)
        self._abandon(cancelled)
        if wait and was_running:
            limit = self._timeout if timeout is None else timeout
            deadline = time.monotonic() + limit
            with self._lock:
                while self._busy_locked() and not self._broken_locked():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        logger.warning(
                            "pool %s: shutdown stopped waiting after %ss", self._pool_id, limit
                        )
                        break
                    self._lock.wait(remaining)
        with self._lock:
            self._stopping.set()
            leftovers = self._drain_locked()
            self._lock.notify_all()
        self._abandon(leftovers)
        if first:
            self._terminate_jobs()
        if wait:
            for dispatcher in self._dispatchers:
                if not dispatcher.join(TERMINATE_GRACE):
                    logger.warning("pool %s: a dispatcher did not stop in time", self._pool_id)

    # -- tasks --------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` to run on a worker; return its future.

        ``fn``, the arguments and the values of ``config.context_vars`` are
        serialized here: anything that cannot be raises ``TypeError`` now, and
        more than ``max_task_size`` bytes of it ``ValueError``.
        Raises ``RuntimeError`` if the pool is not running, and
        ``PoolBrokenError`` if all its workers have failed.
        """
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, not {type(fn).__name__}")
        self._check_accepting()
        values = []
        for var in self._config.context_vars:
            value = var.get(_MISSING)
            if value is not _MISSING:
                values.append((var, value))
        name = _pickle.callable_name(fn)
        try:
            payload = _pickle.dumps((fn, args, kwargs, tuple(values)))
        except Exception as exc:
            raise TypeError(f"cannot send {name}() and its arguments to a worker: {exc}") from exc
        if len(payload) > self.max_task_size:
            raise ValueError(
                f"{name}() and its arguments are {len(payload)} bytes pickled, more than a task "
                f"may carry ({self.max_task_size})"
            )
        with self._lock:
            self._check_accepting_locked()
            task = _Task(f"task-{next(self._task_ids)}", name, payload, self._config.max_retries)
            self._queue.append(task)
            self._lock.notify_all()
        return task.future

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> list[Future[T]]:
        """Submit ``fn(item)`` for each item; return the futures in order."""
        return [self.submit(fn, item) for item in items]

    def status(self) -> PoolStatus:
        """Return a snapshot of workers and task counts, all taken at one instant."""
        with self._lock:
            counts = collections.Counter(w.status for w in self._workers)
            return PoolStatus(
                pool_id=self._pool_id,
                num_workers=self._config.num_workers,
                workers_idle=counts[WorkerStatus.IDLE],
                workers_busy=counts[WorkerStatus.BUSY],
                workers_pending=counts[WorkerStatus.PENDING],
                workers_failed=counts[WorkerStatus.FAILED],
                tasks_queued=len(self._queue),
                tasks_completed=self._tasks_completed,
                tasks_failed=self._tasks_failed,
                worker_details=[w.describe() for w in self._workers],
            )

    # -- internals, called by dispatchers --------------------------------------

    def _check_accepting(self) -> None:
        with self._lock:
            self._check_accepting_locked()

    def _check_accepting_locked(self) -> None:
        if self._state == "shutdown":
            raise RuntimeError(f"cannot submit to pool {self._pool_id}: it has been shut down")
        if self._state != "running":
            raise RuntimeError(f"pool {self._pool_id} is not started: use 'with WorkerPool(...)'")
        if self._broken_locked():
            raise PoolBrokenError(
                f"every worker of pool {self._pool_id} has failed; " + self._failures_locked()
            )

    def _broken_locked(self) -> bool:
        return bool(self._workers) and all(w.status is WorkerStatus.FAILED for w in self._workers)

    def _busy_locked(self) -> bool:
        return bool(self._queue) or any(w.status is WorkerStatus.BUSY for w in self._workers)

    def _failures_locked(self) -> str:
        return "; ".join(
            f"{w.worker_id}: {w.error}" for w in self._workers if w.status is WorkerStatus.FAILED
        )

    def _drain_locked(self) -> list[_Task]:
        tasks = list(self._queue)
        self._queue.clear()
        return tasks

    def _abandon(self, tasks: Iterable[_Task], error: BaseException | None = None) -> None:
        # Outside the lock: completing a future runs its callbacks.
        for task in tasks:
            if not task.started:
                if error is None:
                    task.future.cancel()
                # Moves a cancelled future to CANCELLED_AND_NOTIFIED, which is what
                # wakes concurrent.futures.wait() and as_completed().
                if not task.future.set_running_or_notify_cancel():
                    continue
            task.future.set_exception(
                error
                or PoolShutdownError(f"pool {self._pool_id} shut down before {task.task_id} ran")
            )

    def _exit_code(self, worker: _Worker) -> int | None:
        try:
            return self._client.poll(worker.job_id)
        except KeyError:
            return None

    def _next_task(self, worker: _Worker) -> object:
        with self._lock:
            while True:
                if self._stopping.is_set() or worker.status is WorkerStatus.FAILED:
                    return _STOP
                task = self._pop_locked(worker)
                if task is not None:
                    return task
                if not self._lock.wait(0.5):
                    return None  # a chance to notice that the job died while idle

    def _next_task_nowait(self, worker: _Worker, max_size: int) -> _Task | None:
        """Hand a busy worker one more task, if no other worker is idle to take it.

        Only a task of at most ``max_size`` bytes: it waits in the connection
        behind the running one, and must fit in the socket buffers there.
        """
        with self._lock:
            if (
                self._stopping.is_set()
                or worker.status is WorkerStatus.FAILED
                or any(w.status is WorkerStatus.IDLE for w in self._workers)
            ):
                return None
            return self._pop_locked(worker, max_size)

    def _pop_locked(self, worker: _Worker, max_size: int | None = None) -> _Task | None:
        while self._queue:
            task = self._queue[0]
            if max_size is not None and len(task.payload) > max_size:
                return None
            self._queue.popleft()
            if not task.started:
                if not task.future.set_running_or_notify_cancel():
                    continue  # cancelled while queued
                task.started = True
            worker.in_flight.append(task)
            worker.status = WorkerStatus.BUSY
            return task
        return None

    def _worker_ready(self, worker: _Worker, endpoint: ResolvedEndpoint) -> bool:
        with self._lock:
            if worker.status is not WorkerStatus.PENDING:
                return False
            worker.status = WorkerStatus.IDLE
            worker.endpoint_url = endpoint.url
            pid = endpoint.metadata.get("pid", "")
            worker.pid = int(pid) if pid.isdigit() else None
            self._lock.notify_all()
        logger.info("pool %s: %s ready at %s", self._pool_id, worker.worker_id, endpoint.url)
        return True

    def _orphans_locked(self) -> list[_Task]:
        if not self._broken_locked() or self._stopping.is_set():
            return []
        orphans = self._drain_locked()
        self._tasks_failed += len(orphans)
        return orphans

    def _fail_orphans(self, orphans: list[_Task]) -> None:
        if orphans:
            with self._lock:
                reasons = self._failures_locked()
            self._abandon(
                orphans, PoolBrokenError(f"every worker of pool {self._pool_id} failed; {reasons}")
            )

    def _task_finished(self, worker: _Worker, ok: bool, value: Any) -> None:
        """Settle the oldest task ``worker`` holds with its outcome."""
        with self._lock:
            task = worker.in_flight.popleft()
            if worker.status is WorkerStatus.BUSY and not worker.in_flight:
                worker.status = WorkerStatus.IDLE
            if ok:
                worker.tasks_completed += 1
                self._tasks_completed += 1
            else:
                worker.tasks_failed += 1
                self._tasks_failed += 1
            self._lock.notify_all()
        if ok:
            task.future.set_result(value)
        else:
            task.future.set_exception(value)

    def _worker_failed(self, worker: _Worker, reason: str, *, delivered: bool = True) -> None:
        """Mark ``worker`` FAILED for ``reason``, settle every task it held, and stop its job.

        A task that reached the worker may have run, even if it was still
        waiting its turn when the worker failed, so it is re-run only while it
        has retries left. Tasks never ``delivered`` (no stream could be opened)
        go back to the queue for free.
        """
        failed: list[tuple[_Task, BaseException]] = []
        requeued = 0
        with self._lock:
            if worker.status is WorkerStatus.FAILED:
                return  # and so holds nothing: failing emptied its hands
            held = list(worker.in_flight)
            worker.in_flight.clear()
            worker.status = WorkerStatus.FAILED
            worker.error = f"lost while running {held[0].task_id}: {reason}" if held else reason
            stopping = self._stopping.is_set()
            for position, task in enumerate(held):
                if stopping:
                    failed.append((task, self._shutdown_error(worker, task)))
                elif not delivered or task.retries_left > 0:
                    if delivered:
                        task.retries_left -= 1
                    self._queue.insert(requeued, task)
                    requeued += 1
                else:
                    failed.append((task, self._failed_error(worker, task, position, reason)))
            worker.tasks_failed += len(failed)
            self._tasks_failed += len(failed)
            orphans = self._orphans_locked()
            self._lock.notify_all()
        if held:
            logger.warning(
                "pool %s: %s failed holding %s (%s); %d re-queued",
                self._pool_id,
                worker.worker_id,
                ", ".join(task.task_id for task in held),
                reason,
                requeued,
            )
        else:
            logger.warning("pool %s: %s failed: %s", self._pool_id, worker.worker_id, reason)
        for task, error in failed:
            task.future.set_exception(error)
        self._fail_orphans(orphans)
        self._terminate_worker(worker)

    def _shutdown_error(self, worker: _Worker, task: _Task) -> PoolShutdownError:
        return PoolShutdownError(
            f"pool {self._pool_id} shut down while {task.task_id} ({task.fn_name}) "
            f"ran on {worker.worker_id}"
        )

    def _failed_error(
        self, worker: _Worker, task: _Task, position: int, reason: str
    ) -> WorkerFailedError:
        where = "while running" if position == 0 else "before it could run"
        return WorkerFailedError(
            f"{worker.worker_id} (job {worker.job_id}, pid {worker.pid}) failed {where} "
            f"{task.task_id} ({task.fn_name}): {reason}",
            worker_id=worker.worker_id,
            job_id=worker.job_id,
            task_id=task.task_id,
        )

    def _terminate_worker(self, worker: _Worker) -> None:
        if self._stopping.is_set():
            return  # shutdown terminates every job itself
        try:
            self._client.terminate(worker.job_id)
        except Exception:
            logger.debug("terminating %s failed", worker.job_id, exc_info=True)

    def _terminate_jobs(self) -> None:
        with self._lock:
            job_ids = [w.job_id for w in self._workers]
        threads = [
            threading.Thread(target=self._terminate_quietly, args=(job_id,), daemon=True)
            for job_id in job_ids
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TERMINATE_GRACE * 2 + 1)

    def _terminate_quietly(self, job_id: str) -> None:
        try:
            self._client.terminate(job_id)
        except Exception:
            logger.debug("terminating %s failed", job_id, exc_info=True)
