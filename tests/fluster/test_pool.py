"""WorkerPool end to end: real worker processes, real sockets, real SIGKILLs.

Most tests share one pool (workers are the expensive part); the fault and
shutdown tests, which break their pool on purpose, make their own.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import http.client
import os
import threading
import urllib.parse
from typing import Any, Iterator

import pytest

from contextthreads import ContextThread
from contextthreads.fluster import (
    ActorClient,
    FlusterClient,
    LocalCluster,
    PoolBrokenError,
    PoolShutdownError,
    RemoteError,
    WorkerFailedError,
    WorkerPool,
    WorkerPoolConfig,
    fluster_ctx_scope,
)
from contextthreads.fluster._wire import SIGNATURE_HEADER, sign

from . import tasks
from .pools import UNSENDABLE, detail_for_pid, make_pool, queue_behind_busy, worker_pids
from .support import WAIT, Gate, LogWatcher, pid_alive

pytest.importorskip("cloudpickle")

DETAIL_KEYS = {
    "worker_id",
    "worker_name",
    "status",
    "endpoint_url",
    "pid",
    "current_task_id",
    "tasks_completed",
    "tasks_failed",
}


@pytest.fixture(scope="module")
def shared(cluster: LocalCluster) -> Iterator[WorkerPool]:
    """A two-worker pool of job "job-shared", all workers ready, carrying two ContextVars."""
    config = WorkerPoolConfig(num_workers=2, context_vars=(tasks.REQUEST_ID, tasks.TENANT))
    pool = make_pool(cluster, "job-shared", config)
    try:
        pool.wait_for_workers(timeout=WAIT)
        yield pool
    finally:
        pool.shutdown(wait=True)


def test_dispatchers_resolve_in_creators_context(shared: WorkerPool) -> None:
    """Every dispatcher of a pool made in a FlusterContext found its worker, though the
    test thread no longer holds that context."""
    status = shared.status()
    assert status.workers_idle + status.workers_busy == 2
    assert all(d["endpoint_url"] for d in status.worker_details)


# -- results, errors, serialization --------------------------------------------


def test_submit_and_map_return_real_futures(shared: WorkerPool) -> None:
    """submit() returns a concurrent.futures.Future; map() a list of them, in order."""
    future = shared.submit(tasks.square, 7)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(WAIT) == 49
    futures = shared.map(tasks.square, range(8))
    assert isinstance(futures, list)
    _, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    assert not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, WAIT)) == sorted(
        x * x for x in range(8)
    )
    assert [f.result() for f in futures] == [x * x for x in range(8)]


def test_tasks_run_in_worker_processes_of_the_pool_namespace(shared: WorkerPool) -> None:
    """Tasks run in other processes: the pool's workers, whose jobs sit under the
    creator's job and namespace."""
    seen = [f.result(WAIT) for f in shared.map(lambda _: tasks.whoami(), range(6))]
    pids = worker_pids(shared.status())
    for info in seen:
        assert info["pid"] != os.getpid()
        assert info["pid"] in pids
        assert info["namespace"] == "job-shared"
        assert info["job_id"].startswith(f"job-shared/worker-{shared.pool_id}-")


def test_user_exceptions_keep_type_and_message(shared: WorkerPool) -> None:
    """A task's exception reaches the future with its type and message; it is not a
    worker failure and is not retried."""
    before = shared.status()
    with pytest.raises(ValueError, match="bad value 3"):
        shared.submit(tasks.raise_value_error, 3).result(WAIT)
    with pytest.raises(tasks.TaskError, match="custom failure"):
        shared.submit(tasks.raise_task_error).result(WAIT)
    with pytest.raises(RemoteError, match="Unpicklable: cannot pickle me"):
        shared.submit(tasks.raise_unpicklable).result(WAIT)
    after = shared.status()
    assert after.tasks_failed == before.tasks_failed + 3
    assert after.workers_failed == 0


def test_unserializable_input_raises_at_submit(shared: WorkerPool) -> None:
    """What cannot be pickled raises TypeError from submit() itself and queues nothing;
    what cloudpickle can send (lambdas, closures) runs."""
    lock = threading.Lock()
    before = shared.status().tasks_queued
    with pytest.raises(TypeError, match="cannot send square"):
        shared.submit(tasks.square, lock)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        shared.submit(lambda: lock.locked())
    assert shared.status().tasks_queued == before
    offset = 5
    assert shared.submit(lambda x: x + offset, 1).result(WAIT) == 6


class SmallTaskPool(WorkerPool):
    max_task_size = 4096


def test_oversized_task_raises_at_submit(cluster: LocalCluster) -> None:
    """A task heavier than ``max_task_size`` pickled raises ValueError from submit() itself,
    saying how heavy it is, and queues nothing; the pool serves on."""
    with fluster_ctx_scope(cluster.context("job-heavy")):
        pool = SmallTaskPool(cluster.client(), WorkerPoolConfig(num_workers=1), timeout=WAIT)
        pool.__enter__()
    try:
        with pytest.raises(ValueError, match=r"len\(\) and its arguments are \d+ bytes"):
            pool.submit(len, b"x" * 8192)
        assert pool.status().tasks_queued == 0
        assert pool.submit(len, b"x" * 1024).result(WAIT) == 1024
    finally:
        pool.shutdown(wait=True)


def test_context_vars_travel_with_tasks(shared: WorkerPool) -> None:
    """Values of config.context_vars at submit() are set around the call in the worker;
    unset ones stay unset; nothing a task sets reaches later tasks or the submitter."""

    def submit_with(request_id: str | None, tenant: str | None) -> Any:
        def inner() -> Any:
            if request_id is not None:
                tasks.REQUEST_ID.set(request_id)
            if tenant is not None:
                tasks.TENANT.set(tenant)
            return shared.submit(tasks.read_vars)

        return contextvars.Context().run(inner)

    assert submit_with("req-7", None).result(WAIT) == ("req-7", "<unset>")
    assert submit_with("req-8", "acme").result(WAIT) == ("req-8", "acme")
    writers = [shared.submit(tasks.set_and_read_vars, f"w{i}") for i in range(4)]
    assert [f.result(WAIT) for f in writers] == [(f"w{i}", f"w{i}") for i in range(4)]
    readers = [submit_with(None, None) for _ in range(4)]
    assert [f.result(WAIT) for f in readers] == [("-", "<unset>")] * 4
    assert tasks.TENANT.get("<unset>") == "<unset>"


def test_status_is_a_full_snapshot(shared: WorkerPool) -> None:
    """status() reports worker counts, task counts and per-worker details with pids."""
    pids = {shared.submit(os.getpid).result(WAIT) for _ in range(4)}
    status = shared.status()
    assert status.pool_id == shared.pool_id
    assert status.num_workers == 2
    assert status.workers_idle + status.workers_busy + status.workers_pending == 2
    assert status.workers_failed == 0
    assert status.tasks_completed >= 4
    assert pids <= worker_pids(status)
    for detail in status.worker_details:
        assert set(detail) >= DETAIL_KEYS
        assert detail["status"] in ("IDLE", "BUSY")
        assert detail["worker_name"] == f"_workerpool_{shared.pool_id}:{detail['worker_id']}"
    with pytest.raises(ValueError, match="min_workers"):
        shared.wait_for_workers(min_workers=3)


def test_unsigned_requests_to_a_worker_get_401(shared: WorkerPool, cluster: LocalCluster) -> None:
    """A worker answers 401 to unsigned, wrongly signed and garbage requests on any path,
    and keeps serving the pool and signed calls."""
    detail = shared.status().worker_details[0]
    url = urllib.parse.urlsplit(detail["endpoint_url"])
    assert url.hostname is not None
    assert url.port is not None
    cases = [
        ("POST", "/call", b"\x80\x05garbage", {}),
        ("POST", "/call", b"\x80\x05garbage", {SIGNATURE_HEADER: sign("nope", b"\x80\x05garbage")}),
        ("GET", "/", b"", {}),
        ("DELETE", "/whatever", b"", {SIGNATURE_HEADER: "f" * 64}),
    ]
    for method, path, body, headers in cases:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=WAIT)
        try:
            connection.request(method, path, body, headers)
            assert connection.getresponse().status == 401
        finally:
            connection.close()
    assert pid_alive(detail["pid"])
    client = ActorClient(detail["endpoint_url"], detail["worker_name"], secret=cluster.secret)
    assert client.call("ping") == detail["pid"]
    assert shared.submit(tasks.square, 12).result(WAIT) == 144


# -- two pools, two namespaces ------------------------------------------------


def test_two_pools_in_two_contexts_stay_apart(cluster: LocalCluster) -> None:
    """Two pools made under two FlusterContexts in one process, used at once from two
    threads, each register in their own namespace and run only on their own workers."""
    config = WorkerPoolConfig(num_workers=2)
    pools = {ns: make_pool(cluster, ns, config) for ns in ("team-a", "team-b")}
    try:
        for pool in pools.values():
            pool.wait_for_workers(timeout=WAIT)
        barrier = threading.Barrier(2, timeout=WAIT)
        results: dict[str, list[dict[str, Any]]] = {}

        def use(ns: str) -> None:
            barrier.wait()
            futures = pools[ns].map(lambda _: tasks.whoami(), range(10))
            results[ns] = [f.result(WAIT) for f in futures]

        threads = [ContextThread(target=use, args=(ns,)) for ns in pools]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 2)
            assert not thread.is_alive()
        for ns, pool in pools.items():
            pids = worker_pids(pool.status())
            assert {info["namespace"] for info in results[ns]} == {ns}
            assert {info["pid"] for info in results[ns]} <= pids
            names = {e.name for e in cluster.controller.list_endpoints(f"{ns}/")}
            assert names == {f"{ns}/_workerpool_{pool.pool_id}:worker-{i}" for i in range(2)}
        assert not worker_pids(pools["team-a"].status()) & worker_pids(pools["team-b"].status())
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True)


# -- faults -------------------------------------------------------------------


def test_killed_worker_without_retries_fails_task_then_pool(
    cluster: LocalCluster, gate: Gate
) -> None:
    """SIGKILL mid-task with no retries: the future fails with WorkerFailedError naming
    the worker, which is FAILED; the pool serves on with the other worker. When that one
    is killed too, futures still queued fail with PoolBrokenError and submit() raises it."""
    pool = make_pool(cluster, "job-kill", WorkerPoolConfig(num_workers=2, max_retries=0))
    try:
        pool.wait_for_workers(timeout=WAIT)
        doomed = pool.submit(tasks.report_and_wait, gate.address)
        pid = gate.arrive()
        victim = detail_for_pid(pool, pid)
        assert victim["status"] == "BUSY"
        gate.kill(pid)
        with pytest.raises(WorkerFailedError) as info:
            doomed.result(WAIT)
        assert info.value.worker_id == victim["worker_id"]
        assert victim["worker_id"] in str(info.value)
        assert detail_for_pid(pool, pid)["status"] == "FAILED"
        survivor = pool.submit(os.getpid).result(WAIT)
        assert survivor != pid

        last = pool.submit(tasks.report_and_wait, gate.address)
        assert gate.arrive() == survivor
        queued = queue_behind_busy(pool, 3)
        gate.kill(survivor)
        with pytest.raises(WorkerFailedError):
            last.result(WAIT)
        for future in queued:
            with pytest.raises(PoolBrokenError):
                future.result(WAIT)
        with pytest.raises(PoolBrokenError):
            pool.submit(tasks.square, 1)
        status = pool.status()
        assert status.workers_failed == 2
        assert status.tasks_queued == 0
    finally:
        pool.shutdown(wait=True)


def test_killed_worker_with_retries_reruns_task_elsewhere(
    cluster: LocalCluster, gate: Gate
) -> None:
    """SIGKILL mid-task with a retry left: the task is re-queued and runs to completion on
    the other worker; only the killed worker is FAILED."""
    pool = make_pool(cluster, "job-retry", WorkerPoolConfig(num_workers=2, max_retries=1))
    try:
        pool.wait_for_workers(timeout=WAIT)
        future = pool.submit(tasks.report_and_wait, gate.address)
        first = gate.arrive()
        gate.kill(first)
        second = gate.arrive()
        assert second != first
        gate.release(second)
        assert future.result(WAIT) == second
        status = pool.status()
        assert status.workers_failed == 1
        assert detail_for_pid(pool, first)["status"] == "FAILED"
        assert status.tasks_completed == 1
    finally:
        pool.shutdown(wait=True)


# -- shutdown -----------------------------------------------------------------


def test_shutdown_wait_drains_queued_tasks(
    cluster: LocalCluster, gate: Gate, watch_log: Any
) -> None:
    """shutdown(wait=True) while tasks are queued lets them all run, then terminates the
    worker jobs; submit() afterwards raises RuntimeError."""
    pool = make_pool(cluster, "job-drain", WorkerPoolConfig(num_workers=1))
    blocked = pool.submit(tasks.report_and_wait, gate.address, "unblocked")
    pid = gate.arrive()
    queued = queue_behind_busy(pool, 3)
    assert pool.status().tasks_queued == 3
    started: LogWatcher = watch_log("shutting down")
    stopper = ContextThread(target=pool.shutdown, kwargs={"wait": True})
    stopper.start()
    assert started.seen.wait(WAIT)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(tasks.square, 9)
    gate.release(pid)
    stopper.join(WAIT * 2)
    assert not stopper.is_alive()
    assert blocked.result(0) == "unblocked"
    assert [f.result(0) for f in queued] == [UNSENDABLE] * 3
    assert not pid_alive(pid)


def test_shutdown_nowait_cancels_queued_and_fails_running(
    cluster: LocalCluster, gate: Gate
) -> None:
    """shutdown(wait=False) while a task runs and others are queued returns, cancels the
    queued futures, fails the running one with PoolShutdownError, and kills the worker."""
    pool = make_pool(cluster, "job-stop", WorkerPoolConfig(num_workers=1))
    running = pool.submit(tasks.report_and_wait, gate.address)
    pid = gate.arrive()
    queued = queue_behind_busy(pool, 3)
    pool.shutdown(wait=False)
    _, not_done = concurrent.futures.wait([running, *queued], timeout=WAIT)
    assert not not_done
    assert all(f.cancelled() for f in queued)
    with pytest.raises(PoolShutdownError, match="worker-0"):
        running.result(0)
    assert not pid_alive(pid)
    with pytest.raises(RuntimeError):
        pool.submit(tasks.square, 1)
    pool.shutdown(wait=True)  # a second call is harmless


def test_shutdown_cancel_futures_and_user_cancel(cluster: LocalCluster, gate: Gate) -> None:
    """A queued future cancelled by its owner is skipped; shutdown(cancel_futures=True)
    cancels the rest at once, while the running task still completes."""
    pool = make_pool(cluster, "job-cancel", WorkerPoolConfig(num_workers=1))
    running = pool.submit(tasks.report_and_wait, gate.address, "finished")
    pid = gate.arrive()
    queued = queue_behind_busy(pool, 3)
    assert queued[0].cancel()
    stopper = ContextThread(target=pool.shutdown, kwargs={"cancel_futures": True})
    stopper.start()
    _, not_done = concurrent.futures.wait(queued, timeout=WAIT)
    assert not not_done
    assert all(f.cancelled() for f in queued)
    gate.release(pid)
    stopper.join(WAIT * 2)
    assert not stopper.is_alive()
    assert running.result(0) == "finished"


class ShutdownDuringStart(FlusterClient):
    """A client that shuts the pool down from inside its first submit, as another thread
    calling shutdown() while start() launches workers would."""

    pool: WorkerPool | None = None

    def submit(self, *args: Any, **kwargs: Any) -> str:
        job_id = super().submit(*args, **kwargs)
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.shutdown(wait=False)
        return job_id


def test_shutdown_while_starting_stops_the_pool_for_good(cluster: LocalCluster) -> None:
    """A pool shut down while start() is still launching workers does not start after all:
    start() raises RuntimeError, every job it launched is terminated, and the pool takes no
    task."""
    client = ShutdownDuringStart(cluster)
    with fluster_ctx_scope(cluster.context("job-abort")):
        pool = WorkerPool(client, WorkerPoolConfig(num_workers=2), timeout=WAIT)
        client.pool = pool
        with pytest.raises(RuntimeError, match="shut down while it started"):
            pool.start()
    assert len(pool.job_ids) == 2
    for job_id in pool.job_ids:
        assert client.wait(job_id, WAIT) is not None
    with pytest.raises(RuntimeError, match="has been shut down"):
        pool.submit(tasks.square, 2)
    pool.shutdown(wait=True)
