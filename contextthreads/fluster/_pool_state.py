"""A WorkerPool's state machine: its phase, queue, workers and counters, and every transition.

The rule of this module: every change to the state of a pool, of its tasks
or of its workers is a method of ``PoolState``, made under its one lock.
Nothing here opens a socket, starts a process or logs: the pool (``_pool``)
and its dispatchers (``_dispatch``) do, and call these methods to say what
happened.

A task is in exactly one place: the queue, one worker's ``in_flight``, or
settled. Every future ends (see ``WorkerPool``). Futures are settled outside
the lock (a ``Settlement``), since settling one may run its callbacks.
"""

from __future__ import annotations

import collections
import itertools
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable

from ._pool_types import (
    STOP,
    PoolBrokenError,
    PoolPhase,
    PoolStatus,
    Settlement,
    Stop,
    Task,
    Worker,
    WorkerStatus,
    failures,
    lost_task_error,
    pool_status,
    shutdown_error,
)

__all__ = ("PoolState",)


class PoolState:
    """The queue, the workers and the counters of one pool, and every transition between them.

    Thread-safe: every method takes the one lock. ``stopping`` is set when
    the pool stops, for dispatchers to wait on without the lock. A worker
    not registered ``registration_timeout`` seconds after it was added fails
    (None: never). ``new_future`` makes each task's future. Times (``now``)
    are ``time.monotonic()`` values, given by the caller.
    """

    def __init__(
        self,
        pool_id: str,
        num_workers: int,
        max_retries: int,
        *,
        registration_timeout: float | None = None,
        new_future: Callable[[], Future[Any]] = Future,
    ) -> None:
        self.pool_id = pool_id
        self.num_workers = num_workers
        self.max_retries = max_retries
        self.registration_timeout = registration_timeout
        self._new_future = new_future
        self.stopping = threading.Event()
        self._lock = threading.Condition(threading.Lock())
        self._phase = PoolPhase.NEW
        self._queue: collections.deque[Task] = collections.deque()
        self._workers: list[Worker] = []
        self._task_ids = itertools.count()
        self._tasks_completed = 0
        self._tasks_failed = 0

    # -- views --------------------------------------------------------------

    @property
    def phase(self) -> PoolPhase:
        """Return where the pool is in its life."""
        return self._phase

    def workers(self) -> list[Worker]:
        """Return the workers added so far, in order."""
        with self._lock:
            return list(self._workers)

    def queued(self) -> list[Task]:
        """Return the tasks waiting for a worker, next first."""
        with self._lock:
            return list(self._queue)

    def status(self) -> PoolStatus:
        """Return a snapshot of workers and task counts, all taken at one instant."""
        with self._lock:
            return pool_status(
                self.pool_id,
                self.num_workers,
                self._workers,
                len(self._queue),
                self._tasks_completed,
                self._tasks_failed,
            )

    def wait_for_workers(self, min_workers: int | None, timeout: float) -> None:
        """Block until ``min_workers`` (default: all) are ready: see ``WorkerPool``."""
        need = self.num_workers if min_workers is None else min_workers
        if not 1 <= need <= self.num_workers:
            raise ValueError(f"min_workers must be in 1..{self.num_workers}, got {need}")
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                if self._phase not in (PoolPhase.RUNNING, PoolPhase.STARTING):
                    raise RuntimeError(f"pool {self.pool_id} is not running ({self._phase.value})")
                ready = sum(
                    w.status in (WorkerStatus.IDLE, WorkerStatus.BUSY) for w in self._workers
                )
                alive = ready + sum(w.status is WorkerStatus.PENDING for w in self._workers)
                if ready >= need:
                    return
                if alive < need:
                    raise PoolBrokenError(
                        f"pool {self.pool_id}: only {alive} workers left, {need} needed; "
                        + failures(self._workers)
                    )
                if not self._wait_locked(deadline):
                    raise TimeoutError(
                        f"pool {self.pool_id}: {ready} of {need} workers ready after {timeout}s"
                    )

    # -- the pool's life ----------------------------------------------------

    def begin_start(self) -> None:
        """NEW -> STARTING; ``RuntimeError`` if the pool was started before."""
        with self._lock:
            if self._phase is not PoolPhase.NEW:
                raise RuntimeError("a WorkerPool can be started only once")
            self._phase = PoolPhase.STARTING

    def add_worker(self, worker: Worker, now: float) -> None:
        """Count ``worker`` (PENDING: launched ``now``, not registered yet) as one of the pool's."""
        with self._lock:
            if self.registration_timeout is not None:
                worker.register_by = now + self.registration_timeout
            self._workers.append(worker)

    def start_running(self) -> bool:
        """STARTING -> RUNNING; return False if the pool was shut down meanwhile."""
        with self._lock:
            if self._phase is not PoolPhase.STARTING:
                return False
            self._phase = PoolPhase.RUNNING
            self._lock.notify_all()
            return True

    def shut_down(self, cancel_futures: bool = False) -> tuple[bool, bool]:
        """-> SHUTDOWN: take no more tasks; cancel the queued ones if asked, else they drain.

        Returns whether this was the first call, and whether the pool was running.
        """
        with self._lock:
            first = self._phase in (PoolPhase.NEW, PoolPhase.STARTING, PoolPhase.RUNNING)
            was_running = self._phase is PoolPhase.RUNNING
            if first:
                self._phase = PoolPhase.SHUTDOWN
            settlement = Settlement(self.pool_id)
            if cancel_futures:
                settlement.abandoned = self._drain_locked()
            self._lock.notify_all()
        settlement.settle()
        return first, was_running

    def wait_until_drained(self, timeout: float) -> bool:
        """Wait until no task is queued or running, or none can run; False on ``timeout``."""
        with self._lock:
            return self._lock.wait_for(
                lambda: not self._busy_locked() or self._broken_locked(), timeout
            )

    def stop(self) -> None:
        """-> STOPPED: tell dispatchers to stop, and settle every task still queued."""
        with self._lock:
            self._phase = PoolPhase.STOPPED
            self.stopping.set()
            settlement = Settlement(self.pool_id)
            settlement.abandoned = self._drain_locked()
            self._lock.notify_all()
        settlement.settle()

    # -- tasks --------------------------------------------------------------

    def check_accepting(self) -> None:
        """Raise ``RuntimeError`` unless the pool runs, ``PoolBrokenError`` if it cannot."""
        with self._lock:
            self._check_accepting_locked()

    def submit(self, fn_name: str, payload: bytes) -> Task:
        """Queue a task (``payload`` from ``_codec.encode_task()``); return it."""
        with self._lock:
            self._check_accepting_locked()
            task_id = f"task-{next(self._task_ids)}"
            task = Task(task_id, fn_name, payload, self.max_retries, self._new_future())
            self._queue.append(task)
            self._lock.notify_all()
        return task

    def next_task(self, worker: Worker, timeout: float) -> Task | Stop | None:
        """Hand ``worker`` the next task, waiting up to ``timeout`` s; None if none came.

        ``STOP`` once the pool has stopped or the worker has failed.
        """
        with self._lock:
            while True:
                if self.stopping.is_set() or worker.status is WorkerStatus.FAILED:
                    return STOP
                task = self._pop_locked(worker)
                if task is not None:
                    return task
                if not self._lock.wait(timeout):
                    return None

    def next_task_nowait(self, worker: Worker, max_size: int) -> Task | None:
        """Hand a busy worker one more task of at most ``max_size`` bytes, if no worker is idle.

        It waits in the connection behind the running one, so it must fit in the socket buffers.
        """
        with self._lock:
            if (
                self.stopping.is_set()
                or worker.status is WorkerStatus.FAILED
                or any(w.status is WorkerStatus.IDLE for w in self._workers)
            ):
                return None
            return self._pop_locked(worker, max_size)

    def task_finished(self, worker: Worker, ok: bool, value: Any) -> None:
        """Settle the oldest task ``worker`` holds: its result if ``ok``, else its exception."""
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

    # -- workers ------------------------------------------------------------

    def worker_ready(self, worker: Worker, url: str, pid: int | None) -> bool:
        """PENDING -> IDLE, serving at ``url``; return False if ``worker`` was not PENDING."""
        with self._lock:
            if worker.status is not WorkerStatus.PENDING:
                return False
            worker.status = WorkerStatus.IDLE
            worker.endpoint_url = url
            worker.pid = pid
            self._lock.notify_all()
        return True

    def registration_expired(self, worker: Worker, now: float) -> bool:
        """PENDING past its registration deadline -> FAILED, like a dead worker; return if so."""
        with self._lock:
            if (
                worker.status is not WorkerStatus.PENDING
                or worker.register_by is None
                or now < worker.register_by
            ):
                return False
            reason = f"did not register within {self.registration_timeout}s"
            failure = self._fail_locked(worker, reason, delivered=False)
        failure.settle()
        return True

    def worker_failed(self, worker: Worker, reason: str, *, delivered: bool = True) -> int | None:
        """-> FAILED for ``reason``, settling the tasks ``worker`` held; return how many re-queued.

        A task that reached the worker may have run, even if it was waiting its
        turn, so it goes back to the front of the queue (in order) only while it
        has retries left; tasks never ``delivered`` go back for free. Once every
        worker has failed, queued tasks fail with ``PoolBrokenError``. Returns
        None if ``worker`` had failed already (and so held nothing).
        """
        with self._lock:
            if worker.status is WorkerStatus.FAILED:
                return None
            failure = self._fail_locked(worker, reason, delivered=delivered)
        failure.settle()
        return failure.requeued

    # -- under the lock -----------------------------------------------------

    def _wait_locked(self, deadline: float) -> bool:
        # Wait for the next change, unless ``deadline`` has passed.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._lock.wait(remaining)
        return True

    def _check_accepting_locked(self) -> None:
        if self._phase in (PoolPhase.SHUTDOWN, PoolPhase.STOPPED):
            raise RuntimeError(f"cannot submit to pool {self.pool_id}: it has been shut down")
        if self._phase is not PoolPhase.RUNNING:
            raise RuntimeError(f"pool {self.pool_id} is not started: use 'with WorkerPool(...)'")
        if self._broken_locked():
            raise PoolBrokenError(
                f"every worker of pool {self.pool_id} has failed; " + failures(self._workers)
            )

    def _broken_locked(self) -> bool:
        return bool(self._workers) and all(w.status is WorkerStatus.FAILED for w in self._workers)

    def _busy_locked(self) -> bool:
        return bool(self._queue) or any(w.status is WorkerStatus.BUSY for w in self._workers)

    def _fail_locked(self, worker: Worker, reason: str, *, delivered: bool) -> Settlement:
        held = list(worker.in_flight)
        worker.in_flight.clear()
        worker.status = WorkerStatus.FAILED
        worker.error = f"lost while running {held[0].task_id}: {reason}" if held else reason
        stopping = self.stopping.is_set()
        failure = Settlement(self.pool_id)
        for position, task in enumerate(held):
            if stopping:
                failure.failed.append((task, shutdown_error(self.pool_id, worker, task)))
            elif not delivered or task.retries_left > 0:
                if delivered:
                    task.retries_left -= 1
                self._queue.insert(failure.requeued, task)
                failure.requeued += 1
            else:
                failure.failed.append((task, lost_task_error(worker, task, position, reason)))
        worker.tasks_failed += len(failure.failed)
        self._tasks_failed += len(failure.failed)
        if self._broken_locked() and not stopping:
            failure.abandoned = self._drain_locked()
            self._tasks_failed += len(failure.abandoned)
            failure.error = PoolBrokenError(
                f"every worker of pool {self.pool_id} failed; {failures(self._workers)}"
            )
        self._lock.notify_all()
        return failure

    def _drain_locked(self) -> list[Task]:
        tasks = list(self._queue)
        self._queue.clear()
        return tasks

    def _pop_locked(self, worker: Worker, max_size: int | None = None) -> Task | None:
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
