"""A WorkerPool fed from many threads at once while its worker processes are killed.

Runs on every interpreter; on a free-threaded build the submitters and the
pool's dispatchers run in parallel (see ``tests/racing.py``).
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import Future
from typing import Any, Callable

import pytest
from racing import run_together

from contextthreads.fluster import LocalCluster, WorkerPoolConfig

from . import tasks
from .pools import make_pool
from .support import WAIT, LogWatcher, pid_alive

pytest.importorskip("cloudpickle")

SUBMITTERS = 8
TASKS_EACH = 300
KILLS = 2


def test_pool_fed_from_many_threads_while_workers_are_killed(
    cluster: LocalCluster, watch_log: Callable[[str], LogWatcher]
) -> None:
    """Eight threads submit at once, half their tasks before and half after the first of two
    SIGKILLs of a worker: every future ends with the values its submitter set at submit()
    (a task's own writes reach no other task), none is lost or settled twice (no dispatcher
    crashes), the pool's counts add up and the killed workers are FAILED."""
    crashed = watch_log("crashed")
    config = WorkerPoolConfig(
        num_workers=KILLS + 1,
        max_retries=KILLS,
        context_vars=(tasks.REQUEST_ID, tasks.TENANT),
    )
    pool = make_pool(cluster, "job-stress", config)
    total = SUBMITTERS * TASKS_EACH
    settled: list[int] = []
    milestones = {total // 4: threading.Event(), (3 * total) // 4: threading.Event()}
    first_kill = threading.Event()
    killed: list[int] = []

    def count(_: Future[Any]) -> None:
        settled.append(1)
        for at, reached in milestones.items():
            if len(settled) >= at:
                reached.set()

    def submitter(n: int) -> Callable[[], None]:
        def body() -> None:
            tasks.TENANT.set(f"tenant {n}")
            futures: list[Future[tuple[str, str]]] = []
            for i in range(TASKS_EACH):
                if i == TASKS_EACH // 2 and not first_kill.wait(WAIT):
                    raise AssertionError("no worker was killed")
                tasks.REQUEST_ID.set(f"request {n}.{i}")
                if i % 5 == 4:  # a task that writes: no later task may see it
                    futures.append(pool.submit(tasks.set_and_read_vars, f"written {n}.{i}"))
                else:
                    futures.append(pool.submit(tasks.read_vars))
                futures[-1].add_done_callback(count)
            for i, future in enumerate(futures):
                expected = f"written {n}.{i}" if i % 5 == 4 else f"request {n}.{i}"
                tenant = expected if i % 5 == 4 else f"tenant {n}"
                assert future.result(timeout=WAIT) == (expected, tenant)

        return body

    def killer() -> None:
        for reached in milestones.values():
            assert reached.wait(WAIT), f"only {len(settled)} of {total} tasks settled"
            alive = [d["pid"] for d in pool.status().worker_details if d["status"] != "FAILED"]
            pid = sorted(set(alive) - set(killed))[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            first_kill.set()

    try:
        pool.wait_for_workers(timeout=WAIT)
        run_together([submitter(n) for n in range(SUBMITTERS)] + [killer])
        status = pool.status()
        assert (status.tasks_completed, status.tasks_failed, status.tasks_queued) == (total, 0, 0)
        assert status.workers_busy == 0
        failed = {d["pid"] for d in status.worker_details if d["status"] == "FAILED"}
        assert failed == set(killed)
        assert not any(pid_alive(pid) for pid in killed)
        assert not crashed.seen.is_set()
    finally:
        pool.shutdown(wait=True)
