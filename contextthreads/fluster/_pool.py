"""WorkerPool: run callables on worker processes, one dispatcher thread per worker.

Each worker job hosts a task-executor actor and registers it with the
controller, inside the namespace of the job that created the pool. Each
``WorkerDispatcher`` runs on a ``ContextThread`` started in the pool
creator's context, so its resolver sees the creator's FlusterContext; on a
plain ``threading.Thread`` (before 3.14's inheritance flag) resolving would
raise ``RuntimeError``. Dispatchers take tasks from one shared queue.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Sequence

from . import _pickle
from ._cluster import Entrypoint, FlusterClient
from ._codec import encode_task
from ._context import check_job_name, fluster_ctx
from ._dispatch import WorkerDispatcher
from ._launcher import TERMINATE_GRACE
from ._pool_state import PoolState
from ._pool_types import PoolStatus, Worker
from ._pool_worker import serve_worker, worker_actor_name
from ._resolver import Resolver
from ._wire import MAX_BODY

if TYPE_CHECKING:
    from .._typing import P, T

__all__ = ("WorkerPool", "WorkerPoolConfig")

logger = logging.getLogger("contextthreads.fluster")

_MISSING = object()


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


class WorkerPool:
    """Run callables on a pool of worker processes launched as jobs of ``client``'s cluster.

    Create and enter it in a FlusterContext (``fluster_ctx_scope``): the
    worker jobs are children of that job, register in its namespace, and
    the dispatchers, started on ``ContextThread``\\ s in that context, resolve
    there. ``timeout`` bounds each task's call to its worker: a task that
    takes longer counts as a worker failure. ``submit()``, ``map()``,
    ``status()``, ``wait_for_workers()`` and ``shutdown()`` are thread-safe;
    every change of state is a ``PoolState`` transition, under one lock.
    Every future ends: with a
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
        self._state = PoolState(uuid.uuid4().hex[:8], config.num_workers, config.max_retries)
        self._dispatchers: list[WorkerDispatcher] = []

    def __repr__(self) -> str:
        return f"WorkerPool(pool_id={self.pool_id!r}, num_workers={self._config.num_workers})"

    @property
    def pool_id(self) -> str:
        """Return this pool's random id, part of every worker's name."""
        return self._state.pool_id

    @property
    def job_ids(self) -> list[str]:
        """Return the job ids of the workers launched so far."""
        return [worker.job_id for worker in self._state.workers()]

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
        state, pool_id = self._state, self.pool_id
        state.begin_start()
        try:
            for index in range(self._config.num_workers):
                job_id = self._client.submit(
                    Entrypoint(serve_worker, (pool_id, index)),
                    name=f"{self._config.name_prefix}-{pool_id}-{index}",
                )
                state.add_worker(Worker(index, worker_actor_name(pool_id, index), job_id))
        except BaseException:
            state.shut_down()
            self._terminate_jobs()
            raise
        if not state.start_running():
            self._terminate_jobs()
            raise RuntimeError(f"pool {pool_id} was shut down while it started")
        self._dispatchers = [
            self.dispatcher_class(
                state,
                worker,
                client=self._client,
                resolver=self._resolver,
                secret=ctx.secret,
                timeout=self._timeout,
            )
            for worker in state.workers()
        ]
        for dispatcher in self._dispatchers:
            dispatcher.start()
        logger.info("pool %s launched %d workers", pool_id, len(self._dispatchers))

    def wait_for_workers(self, min_workers: int | None = None, timeout: float = 60.0) -> None:
        """Block until ``min_workers`` (default: all) workers are ready, at most ``timeout`` s.

        Raises ``TimeoutError`` when time runs out, and ``PoolBrokenError`` at
        once when too many workers have failed for the count ever to be met.
        """
        self._state.wait_for_workers(min_workers, timeout)

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
        first, was_running = self._state.shut_down(cancel_futures)
        logger.info("pool %s: shutting down (wait=%s)", self.pool_id, wait)
        if wait and was_running:
            limit = self._timeout if timeout is None else timeout
            if not self._state.wait_until_drained(limit):
                logger.warning("pool %s: shutdown stopped waiting after %ss", self.pool_id, limit)
        self._state.stop()
        if first:
            self._terminate_jobs()
        if wait:
            for dispatcher in self._dispatchers:
                if not dispatcher.join(TERMINATE_GRACE):
                    logger.warning("pool %s: a dispatcher did not stop in time", self.pool_id)

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
        self._state.check_accepting()
        values = []
        for var in self._config.context_vars:
            value = var.get(_MISSING)
            if value is not _MISSING:
                values.append((var, value))
        payload = encode_task(fn, args, kwargs, values, self.max_task_size)
        return self._state.submit(_pickle.callable_name(fn), payload).future

    def map(self, fn: Callable[[Any], T], items: Iterable[Any]) -> list[Future[T]]:
        """Submit ``fn(item)`` for each item; return the futures in order."""
        return [self.submit(fn, item) for item in items]

    def status(self) -> PoolStatus:
        """Return a snapshot of workers and task counts, all taken at one instant."""
        return self._state.status()

    # -- jobs ---------------------------------------------------------------

    def _terminate_jobs(self) -> None:
        threads = [
            threading.Thread(target=self._terminate_quietly, args=(job_id,), daemon=True)
            for job_id in self.job_ids
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
