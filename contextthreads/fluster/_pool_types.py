"""What a WorkerPool is made of and what it reports: phases, tasks, workers, status, errors.

Plain records. ``PoolState`` (``_pool_state``) makes every change to them.
"""

from __future__ import annotations

import collections
import enum
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = (
    "STOP",
    "PoolBrokenError",
    "PoolPhase",
    "PoolShutdownError",
    "PoolStatus",
    "Settlement",
    "Stop",
    "Task",
    "Worker",
    "WorkerFailedError",
    "WorkerStatus",
    "failures",
    "lost_task_error",
    "pool_status",
    "shutdown_error",
)


class PoolPhase(enum.Enum):
    """Where a pool is in its life."""

    NEW = "new"
    STARTING = "starting"  # launching its worker jobs
    RUNNING = "running"  # accepting tasks
    SHUTDOWN = "shutdown"  # accepting none; the queue drains unless cancelled
    STOPPED = "stopped"  # dispatchers stop; whatever is left has been settled


class Stop(enum.Enum):
    """What ``PoolState.next_task()`` returns to a dispatcher that must stop."""

    STOP = "STOP"


STOP = Stop.STOP


class WorkerStatus(enum.Enum):
    """Where a worker is in its life, as its dispatcher sees it.

    Attributes:
        PENDING: Launched; its endpoint is not registered yet.
        IDLE: Registered, and running no task.
        BUSY: Running a task (and maybe holding the next).
        FAILED: Gone for good (died, stopped, or never registered in time);
            its dispatcher has stopped.
    """

    PENDING = "PENDING"
    IDLE = "IDLE"
    BUSY = "BUSY"
    FAILED = "FAILED"


class WorkerFailedError(RuntimeError):
    """A task was lost because the worker running it failed, and it had no retries left.

    It pickles with its attributes, so it can cross processes like any result.

    Args:
        message: What happened, naming the worker.
        worker_id: The worker's id in its pool (``"worker-0"``).
        job_id: The worker's Fluster job id.
        task_id: The lost task's id.
    """

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
class PoolStatus:
    """A consistent snapshot of a pool, taken under its lock: every count at one instant.

    Attributes:
        pool_id: The pool's random id.
        num_workers: How many workers the pool launched.
        workers_idle: Workers registered and running no task.
        workers_busy: Workers running a task.
        workers_pending: Workers launched but not registered yet.
        workers_failed: Workers gone for good.
        tasks_queued: Tasks waiting for a worker.
        tasks_completed: Tasks that returned a result.
        tasks_failed: Tasks that raised, or were lost with their worker or the
            pool.
        worker_details: One dict per worker, with ``worker_id``,
            ``worker_name``, ``job_id``, ``status`` (a ``WorkerStatus`` value),
            ``endpoint_url``, ``pid``, ``current_task_id``,
            ``tasks_completed``, ``tasks_failed`` and ``error``.
    """

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


class Task:
    """One submitted call: its serialized form, its future, and the retries it has left."""

    __slots__ = ("fn_name", "future", "payload", "retries_left", "started", "task_id")

    def __init__(
        self, task_id: str, fn_name: str, payload: bytes, retries: int, future: Future[Any]
    ) -> None:
        self.task_id = task_id
        self.fn_name = fn_name
        self.payload = payload
        self.future = future
        self.retries_left = retries
        #: Whether the future is RUNNING: the task has been handed to a worker once.
        self.started = False


class Worker:
    """A worker's state as the pool sees it. Changed only by ``PoolState``, under its lock."""

    def __init__(self, index: int, name: str, job_id: str) -> None:
        self.worker_id = f"worker-{index}"
        #: The actor name the worker registers (before namespacing).
        self.worker_name = name
        self.job_id = job_id
        self.status = WorkerStatus.PENDING
        #: When (``time.monotonic()``) a PENDING worker that has not registered is given up on.
        self.register_by: float | None = None
        self.endpoint_url: str | None = None
        self.pid: int | None = None
        #: Tasks sent to the worker and not answered yet, oldest (the running one) first.
        self.in_flight: collections.deque[Task] = collections.deque()
        self.tasks_completed = 0
        self.tasks_failed = 0
        self.error: str | None = None

    def describe(self) -> dict[str, Any]:
        """Return the worker's entry in ``PoolStatus.worker_details``."""
        return {
            "worker_id": self.worker_id,
            "worker_name": self.worker_name,
            "job_id": self.job_id,
            "status": self.status.value,
            "endpoint_url": self.endpoint_url,
            "pid": self.pid,
            "current_task_id": self.in_flight[0].task_id if self.in_flight else None,
            "tasks_completed": self.tasks_completed,
            "tasks_failed": self.tasks_failed,
            "error": self.error,
        }


class Settlement:
    """What a ``PoolState`` transition leaves to settle once its lock is released.

    Settling a future may run its callbacks, so never under the lock.
    ``failed`` tasks end with their error. ``abandoned`` ones end with
    ``error``, or, without one, cancelled if they never ran and with
    ``PoolShutdownError`` if they did. ``requeued`` counts the tasks the
    transition put back in the queue.
    """

    def __init__(self, pool_id: str) -> None:
        self.pool_id = pool_id
        self.failed: list[tuple[Task, BaseException]] = []
        self.abandoned: list[Task] = []
        self.error: BaseException | None = None
        self.requeued = 0

    def settle(self) -> None:
        """End every future this settlement holds."""
        for task, failure in self.failed:
            task.future.set_exception(failure)
        for task in self.abandoned:
            if not task.started:
                if self.error is None:
                    task.future.cancel()
                # Moves a cancelled future to CANCELLED_AND_NOTIFIED, which is what
                # wakes concurrent.futures.wait() and as_completed().
                if not task.future.set_running_or_notify_cancel():
                    continue
            task.future.set_exception(
                self.error
                or PoolShutdownError(f"pool {self.pool_id} shut down before {task.task_id} ran")
            )


def lost_task_error(worker: Worker, task: Task, position: int, reason: str) -> WorkerFailedError:
    """Return the error of ``task``, ``position`` in line on ``worker`` when it failed."""
    where = "while running" if position == 0 else "before it could run"
    return WorkerFailedError(
        f"{worker.worker_id} (job {worker.job_id}, pid {worker.pid}) failed {where} "
        f"{task.task_id} ({task.fn_name}): {reason}",
        worker_id=worker.worker_id,
        job_id=worker.job_id,
        task_id=task.task_id,
    )


def shutdown_error(pool_id: str, worker: Worker, task: Task) -> PoolShutdownError:
    """Return the error of ``task``, held by ``worker`` when pool ``pool_id`` stopped."""
    return PoolShutdownError(
        f"pool {pool_id} shut down while {task.task_id} ({task.fn_name}) ran on {worker.worker_id}"
    )


def failures(workers: Sequence[Worker]) -> str:
    """Return why each failed worker of ``workers`` failed, for error messages."""
    return "; ".join(
        f"{w.worker_id}: {w.error}" for w in workers if w.status is WorkerStatus.FAILED
    )


def pool_status(
    pool_id: str,
    num_workers: int,
    workers: Sequence[Worker],
    tasks_queued: int,
    tasks_completed: int,
    tasks_failed: int,
) -> PoolStatus:
    """Return the status of pool ``pool_id`` with these workers and task counts."""
    counts = collections.Counter(w.status for w in workers)
    return PoolStatus(
        pool_id=pool_id,
        num_workers=num_workers,
        workers_idle=counts[WorkerStatus.IDLE],
        workers_busy=counts[WorkerStatus.BUSY],
        workers_pending=counts[WorkerStatus.PENDING],
        workers_failed=counts[WorkerStatus.FAILED],
        tasks_queued=tasks_queued,
        tasks_completed=tasks_completed,
        tasks_failed=tasks_failed,
        worker_details=[w.describe() for w in workers],
    )
