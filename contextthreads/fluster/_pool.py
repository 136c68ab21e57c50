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
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Sequence

from . import _pickle
from ._callbacks import CallbackThread
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

    Immutable, so one config may serve many pools, from any thread.

    Args:
        num_workers: How many worker processes to launch, at least 1.
        max_retries: How many times a task whose worker died is re-run on
            another worker, at least 0. Exceptions raised by the task itself
            are never retried.
        name_prefix: The start of the worker job names
            (``<prefix>-<pool id>-<index>``): one job-id segment, without ``/``.
        context_vars: The ``ContextVar``\\ s, with distinct names, whose
            values at ``submit()`` travel with each task and are set around
            the call in the worker. Their values must pickle.
        registration_timeout: Seconds a launched worker has to register, more
            than 0. One that has not is FAILED, like a worker that died, and
            its job stopped.

    Raises:
        TypeError: If ``num_workers`` or ``max_retries`` is not an int, or
            ``context_vars`` holds something else than ``ContextVar``\\ s.
        ValueError: If a number is out of range, ``name_prefix`` is not a
            usable name, or two of ``context_vars`` share a name.
    """

    num_workers: int
    max_retries: int = 0
    name_prefix: str = "worker"
    context_vars: Sequence[contextvars.ContextVar[Any]] = ()
    registration_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("num_workers", "max_retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if self.num_workers < 1:
            raise ValueError(f"num_workers must be at least 1, got {self.num_workers}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be at least 0, got {self.max_retries}")
        if not self.registration_timeout > 0:
            raise ValueError(
                f"registration_timeout must be positive, got {self.registration_timeout}"
            )
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
    there. Each task runs in its worker process in a fresh copy of the
    worker's context, with the values ``config.context_vars`` had at
    ``submit()`` set. ``submit()``, ``map()``, ``status()``,
    ``wait_for_workers()`` and ``shutdown()`` are thread-safe; every change
    of state is a ``PoolState`` transition, under one lock.

    Every future ends: with a result, the task's exception, a
    ``WorkerFailedError``, ``PoolBrokenError`` or ``PoolShutdownError``, or
    cancelled. Their done-callbacks run on a thread of the pool's own, in the
    context they were added in, never on a dispatcher: a slow callback delays
    other callbacks, not tasks.

    Entering the pool (``with``) calls ``start()`` and waits up to
    ``startup_timeout`` for the first worker; leaving it calls
    ``shutdown(wait=True)``.

    Args:
        client: The cluster's client (``LocalCluster.client()``), which
            launches the worker jobs.
        config: How many workers, retries and which variables to carry.
        timeout: Seconds each task's call to its worker may take, more than
            0: a task that takes longer counts as a worker failure.
        startup_timeout: Seconds ``with`` waits for the first worker to be
            ready, more than 0.
        resolver: Finds the workers' endpoints; by default
            ``client.resolver()``, which resolves in the current namespace.

    Raises:
        TypeError: If ``config`` is not a ``WorkerPoolConfig``.
        ValueError: If a timeout is not positive.
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
        pool_id = uuid.uuid4().hex[:8]
        self._callbacks = CallbackThread(f"fluster-callbacks-{pool_id}")
        self._state = PoolState(
            pool_id,
            config.num_workers,
            config.max_retries,
            registration_timeout=config.registration_timeout,
            new_future=self._callbacks.future,
        )
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
        """Launch the worker jobs and start their dispatchers, in the current FlusterContext.

        Returns without waiting for the workers (see ``wait_for_workers()``).

        Raises:
            RuntimeError: Without a current FlusterContext, or if the pool was
                shut down meanwhile.
        """
        ctx = fluster_ctx()
        state, pool_id = self._state, self.pool_id
        state.begin_start()
        try:
            for index in range(self._config.num_workers):
                job_id = self._client.submit(
                    Entrypoint(serve_worker, (pool_id, index)),
                    name=f"{self._config.name_prefix}-{pool_id}-{index}",
                )
                worker = Worker(index, worker_actor_name(pool_id, index), job_id)
                state.add_worker(worker, time.monotonic())
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
                ssl_context=self._client.ssl_context,
            )
            for worker in state.workers()
        ]
        for dispatcher in self._dispatchers:
            dispatcher.start()
        logger.info("pool %s launched %d workers", pool_id, len(self._dispatchers))

    def wait_for_workers(self, min_workers: int | None = None, timeout: float = 60.0) -> None:
        """Block until ``min_workers`` workers are ready to take tasks, or time runs out.

        Args:
            min_workers: How many; None means all of them.
            timeout: The most seconds to wait.

        Raises:
            TimeoutError: If fewer are ready after ``timeout`` seconds.
            PoolBrokenError: At once, when too many workers have failed for
                the count ever to be met.
        """
        self._state.wait_for_workers(min_workers, timeout)

    def shutdown(
        self, wait: bool = True, *, cancel_futures: bool = False, timeout: float | None = None
    ) -> None:
        """Stop the pool and terminate its worker jobs; every future ends. Bounded in time.

        ``submit()`` raises ``RuntimeError`` from now on. Then queued tasks are
        cancelled, worker jobs terminated (tasks still running fail with
        ``PoolShutdownError``) and, with ``wait``, dispatchers joined and
        done-callbacks run. Calling it again does no harm.

        Args:
            wait: Let the queue drain and running tasks finish first, for at
                most ``timeout`` seconds, and return once the dispatchers have
                stopped and the callbacks have run.
            cancel_futures: Cancel the queued tasks at once, as
                ``concurrent.futures`` does.
            timeout: The most seconds ``wait`` waits for the tasks, and then
                for the callbacks; None means the pool's task timeout.
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
            if not self._callbacks.drain(self._timeout if timeout is None else timeout):
                logger.warning("pool %s: done-callbacks still running", self.pool_id)

    # -- tasks --------------------------------------------------------------

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Queue ``fn(*args, **kwargs)`` to run on a worker; return its future.

        ``fn``, the arguments and the values of ``config.context_vars`` are
        serialized here, in the caller's thread, with cloudpickle: a function
        defined in ``__main__`` or a lambda travels by value, one from an
        importable module by reference.

        Args:
            fn: The callable to run in a worker process.
            *args: Its positional arguments.
            **kwargs: Its keyword arguments.

        Returns:
            A ``concurrent.futures.Future`` for the call's result.

        Raises:
            TypeError: If ``fn`` is not callable, or it, its arguments or a
                context value cannot be serialized.
            ValueError: If all of that weighs more than ``max_task_size``
                bytes.
            RuntimeError: If the pool is not running.
            PoolBrokenError: If all its workers have failed.
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
        """Submit ``fn(item)`` for each item; return the futures in order.

        Unlike ``Executor.map()`` it returns the futures, not the results, and
        submits every item before it returns.

        Args:
            fn: The callable to run in a worker process, once per item.
            items: Its arguments, one call each.

        Raises:
            TypeError: As ``submit()`` does; so do the other errors it raises.
        """
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
