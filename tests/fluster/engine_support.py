"""What the cluster-engine tests (Slurm, Ray) share: a pool placed by an engine, and the checks
every engine's pool must pass the same way as one of local workers."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from contextthreads.fluster import (
    JobLauncher,
    LocalCluster,
    WorkerPool,
    WorkerPoolConfig,
    fluster_ctx_scope,
)

from . import tasks
from .support import WAIT, Gate, LogWatcher


@contextlib.contextmanager
def engine_pool(
    launcher: JobLauncher,
    job: str,
    config: WorkerPoolConfig,
    *,
    min_workers: int | None = None,
) -> Iterator[tuple[LocalCluster, WorkerPool]]:
    """Yield a LocalCluster on ``launcher`` and a pool of root job ``job`` in it, with
    ``min_workers`` (default: all) ready; shut both down afterwards."""
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(LocalCluster(launcher=launcher))
        stack.enter_context(fluster_ctx_scope(cluster.context(job)))
        pool = stack.enter_context(
            WorkerPool(cluster.client(), config, timeout=WAIT, startup_timeout=WAIT)
        )
        pool.wait_for_workers(min_workers=min_workers, timeout=WAIT)
        yield cluster, pool


def round_trip_config(num_workers: int = 2) -> WorkerPoolConfig:
    """A pool config carrying the two ContextVars ``check_round_trips`` sets."""
    return WorkerPoolConfig(num_workers=num_workers, context_vars=(tasks.REQUEST_ID, tasks.TENANT))


def check_round_trips(pool: WorkerPool, gate: Gate) -> set[int]:
    """Every worker of ``pool`` (made with ``round_trip_config``) runs a task at once, results
    come back in order, and context_vars reach the task and never leak between tasks.
    Returns the pids of the workers."""
    details = pool.status().worker_details
    held = [pool.submit(tasks.report_and_wait, gate.address) for _ in details]
    pids = {gate.arrive() for _ in details}
    assert pids == {detail["pid"] for detail in details}
    for pid in pids:
        gate.release(pid)
    assert {future.result(WAIT) for future in held} == pids
    squares = [future.result(WAIT) for future in pool.map(tasks.square, range(6))]
    assert squares == [x * x for x in range(6)]
    tasks.REQUEST_ID.set("req-engine")
    tasks.TENANT.set("acme")
    assert pool.submit(tasks.read_vars).result(WAIT) == ("req-engine", "acme")
    assert pool.submit(tasks.set_and_read_vars, "x").result(WAIT) == ("x", "x")
    assert pool.submit(tasks.read_vars).result(WAIT) == ("req-engine", "acme")
    return pids


def check_pending_worker_starts(
    cluster: LocalCluster,
    pool: WorkerPool,
    watch_log: Callable[[str], LogWatcher],
    is_queued: Callable[[str], bool],
) -> None:
    """With exactly one worker of ``pool`` pending, whose job ``is_queued`` in the engine:
    the ready workers run tasks meanwhile, and once one of their jobs ends the pending one
    starts and serves."""
    status = pool.status()
    assert status.workers_pending == 1
    [waiting] = [d for d in status.worker_details if d["status"] == "PENDING"]
    assert is_queued(waiting["job_id"])
    squares = [future.result(WAIT) for future in pool.map(tasks.square, range(4))]
    assert squares == [0, 1, 4, 9]
    started = watch_log(f"{waiting['worker_id']} ready at")
    ready = next(d for d in status.worker_details if d["status"] == "IDLE")
    cluster.client().terminate(ready["job_id"])
    assert started.seen.wait(WAIT)
    assert pool.submit(tasks.square, 5).result(WAIT) == 25


def check_killed_worker_is_retried(
    cluster: LocalCluster, pool: WorkerPool, gate: Gate, kill: Callable[[int], str]
) -> int:
    """A worker killed through the engine while running a task (``kill(pid)`` kills the
    worker whose process is ``pid`` and returns its job id) fails as a local one would:
    the task runs again on another worker, and the job reads as killed. Returns the pid."""
    future = pool.submit(tasks.report_and_wait, gate.address)
    first = gate.arrive()
    victim = kill(first)
    second = gate.arrive()
    assert second != first
    gate.release(second)
    assert future.result(WAIT) == second
    code = cluster.client().wait(victim, WAIT)
    assert code is not None
    assert code < 0
    [detail] = [d for d in pool.status().worker_details if d["job_id"] == victim]
    assert detail["status"] == "FAILED"
    return first
