"""What a WorkerPool is made of and what it reports: tasks, workers, status, errors.

Plain records. ``PoolState`` (``_pool_state``) makes every change to them.
"""

from __future__ import annotations

import collections
import enum
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = (
    "PoolBrokenError",
    "PoolShutdownError",
    "PoolStatus",
    "Task",
    "Worker",
    "WorkerFailedError",
    "WorkerStatus",
    "failures",
    "lost_task_error",
    "pool_status",
    "shutdown_error",
)


class WorkerStatus(enum.Enum):
    """Where a worker is in its life, as its dispatcher sees it."""

    PENDING = "PENDING"  # launched, endpoint not registered yet
    IDLE = "IDLE"
    BUSY = "BUSY"
    FAILED = "FAILED"  # gone for good: its dispatcher has stopped


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


class Task:
    """One submitted call: its serialized form, its future, and the retries it has left."""

    __slots__ = ("fn_name", "future", "payload", "retries_left", "started", "task_id")

    def __init__(self, task_id: str, fn_name: str, payload: bytes, retries: int) -> None:
        self.task_id = task_id
        self.fn_name = fn_name
        self.payload = payload
        self.future: Future[Any] = Future()
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
