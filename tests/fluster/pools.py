"""Helpers of the pool and dispatcher tests: pools entered in a job's context, their workers."""

from __future__ import annotations

import concurrent.futures
from typing import Any

from contextthreads.fluster import (
    LocalCluster,
    PoolStatus,
    WorkerDispatcher,
    WorkerPool,
    WorkerPoolConfig,
    fluster_ctx_scope,
)

from .support import WAIT


def make_pool(
    cluster: LocalCluster, job_id: str, config: WorkerPoolConfig, timeout: float = WAIT
) -> WorkerPool:
    """Enter a pool created in the context of root job ``job_id``; the caller shuts it down."""
    with fluster_ctx_scope(cluster.context(job_id)):
        return WorkerPool(cluster.client(), config, timeout=timeout).__enter__()


def worker_pids(status: PoolStatus) -> set[int]:
    """Return the pids of the workers ``status`` reports."""
    return {d["pid"] for d in status.worker_details}


def detail_for_pid(pool: WorkerPool, pid: int) -> dict[str, Any]:
    """Return the status details of the worker of ``pool`` whose pid is ``pid``."""
    [detail] = [d for d in pool.status().worker_details if d["pid"] == pid]
    return detail


#: Bytes in a task too big to be sent on to a busy worker (see ``queue_behind_busy``).
UNSENDABLE = WorkerDispatcher.max_waiting_size + 1


def queue_behind_busy(pool: WorkerPool, count: int) -> list[concurrent.futures.Future[int]]:
    """Submit ``count`` tasks that stay queued while every worker is busy, however late a
    dispatcher looks at the queue (a small one could be sent on behind the running task).
    Each returns ``UNSENDABLE``."""
    return [pool.submit(len, b"x" * UNSENDABLE) for _ in range(count)]
