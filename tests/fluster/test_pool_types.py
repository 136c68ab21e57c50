"""What a pool reports: its errors travel, its workers describe themselves."""

from __future__ import annotations

import pickle

from contextthreads.fluster import WorkerFailedError
from contextthreads.fluster._pool_types import Task, Worker, lost_task_error


def test_errors_survive_pickling() -> None:
    """WorkerFailedError keeps its fields through pickle (tasks may re-raise it remotely)."""
    error = WorkerFailedError("boom", worker_id="worker-1", job_id="j/w", task_id="task-3")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.worker_id, copy.job_id, copy.task_id) == (
        "boom",
        "worker-1",
        "j/w",
        "task-3",
    )


def test_a_lost_task_error_names_the_worker_the_task_and_the_cause() -> None:
    """The error of a task lost with its worker says which worker (job, pid) failed, whether
    the task was running or waiting its turn, and why; its fields say the same."""
    worker = Worker(2, "_workerpool_p:worker-2", "job-a/w-2")
    worker.pid = 4321
    task = Task("task-7", "square", b"", 0)
    running = lost_task_error(worker, task, 0, "SIGKILL")
    assert str(running) == (
        "worker-2 (job job-a/w-2, pid 4321) failed while running task-7 (square): SIGKILL"
    )
    assert (running.worker_id, running.job_id, running.task_id) == (
        "worker-2",
        "job-a/w-2",
        "task-7",
    )
    assert "before it could run task-7" in str(lost_task_error(worker, task, 1, "SIGKILL"))
    assert worker.describe()["status"] == "PENDING"
