"""WorkerPool end to end: real worker processes, real sockets, real SIGKILLs.

Most tests share one pool (workers are the expensive part); the fault and
shutdown tests, which break their pool on purpose, make their own.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import queue
import signal
import socket
import threading
import urllib.parse
from typing import Any, Iterator, Mapping, Sequence

import fluster_tasks
import pytest
from conftest import joined
from fluster_support import WAIT, Gate, LogWatcher, pid_alive

from contextthreads import ContextThread
from contextthreads.fluster import (
    ActorClient,
    FrameChannel,
    JobHandle,
    LocalCluster,
    LocalProcessLauncher,
    PoolBrokenError,
    PoolShutdownError,
    PoolStatus,
    RemoteError,
    WorkerDispatcher,
    WorkerFailedError,
    WorkerPool,
    WorkerPoolConfig,
    _pickle,
    fluster_ctx_scope,
)
from contextthreads.fluster._codec import decode_reply
from contextthreads.fluster._pool_types import Task as _Task
from contextthreads.fluster._pool_worker import _TaskExecutor
from contextthreads.fluster._wire import SIGNATURE_HEADER, sign

pytest_plugins = ("fluster_fixtures",)

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


def make_pool(
    cluster: LocalCluster, job_id: str, config: WorkerPoolConfig, timeout: float = WAIT
) -> WorkerPool:
    """Enter a pool created in the context of root job ``job_id``; the caller shuts it down."""
    with fluster_ctx_scope(cluster.context(job_id)):
        return WorkerPool(cluster.client(), config, timeout=timeout).__enter__()


@pytest.fixture(scope="module")
def shared(cluster: LocalCluster) -> Iterator[WorkerPool]:
    """A two-worker pool of job "job-shared", all workers ready, carrying two ContextVars."""
    config = WorkerPoolConfig(
        num_workers=2, context_vars=(fluster_tasks.REQUEST_ID, fluster_tasks.TENANT)
    )
    pool = make_pool(cluster, "job-shared", config)
    try:
        pool.wait_for_workers(timeout=WAIT)
        yield pool
    finally:
        pool.shutdown(wait=True)


def worker_pids(status: PoolStatus) -> set[int]:
    return {d["pid"] for d in status.worker_details}


def detail_for_pid(pool: WorkerPool, pid: int) -> dict[str, Any]:
    [detail] = [d for d in pool.status().worker_details if d["pid"] == pid]
    return detail


#: Bytes in a task too big to be sent on to a busy worker (see ``queue_behind_busy``).
UNSENDABLE = WorkerDispatcher.max_waiting_size + 1


def queue_behind_busy(pool: WorkerPool, count: int) -> list[concurrent.futures.Future[int]]:
    """Submit ``count`` tasks that stay queued while every worker is busy, however late a
    dispatcher looks at the queue (a small one could be sent on behind the running task).
    Each returns ``UNSENDABLE``."""
    return [pool.submit(len, b"x" * UNSENDABLE) for _ in range(count)]


# -- the seed bug -------------------------------------------------------------


class PlainThreadDispatcher(WorkerDispatcher):
    thread_class = threading.Thread


class PlainThreadPool(WorkerPool):
    dispatcher_class = PlainThreadDispatcher


def test_regression_dispatcher_on_plain_thread_cannot_resolve(cluster: LocalCluster) -> None:
    """The seed bug, end to end: dispatchers on plain threads start without the creator's
    FlusterContext, the resolver raises RuntimeError and the pool cannot start; the real
    pool (ContextThread dispatchers, see ``shared``) resolves its workers. Under 3.14's
    thread_inherit_context=1 plain threads inherit, so there the plain pool works too.
    """
    config = WorkerPoolConfig(num_workers=1)
    with fluster_ctx_scope(cluster.context("job-plain")):
        pool = PlainThreadPool(cluster.client(), config, timeout=WAIT)
        if getattr(__import__("sys").flags, "thread_inherit_context", 0):
            with pool:
                assert pool.submit(fluster_tasks.square, 4).result(WAIT) == 16
            return
        with pytest.raises(PoolBrokenError, match="needs a FlusterContext"):
            pool.__enter__()
    [detail] = pool.status().worker_details
    assert detail["status"] == "FAILED"
    assert "RuntimeError" in detail["error"]


def test_dispatchers_resolve_in_creators_context(shared: WorkerPool) -> None:
    """Every dispatcher of a pool made in a FlusterContext found its worker, though the
    test thread no longer holds that context."""
    status = shared.status()
    assert status.workers_idle + status.workers_busy == 2
    assert all(d["endpoint_url"] for d in status.worker_details)


# -- results, errors, serialization --------------------------------------------


def test_submit_and_map_return_real_futures(shared: WorkerPool) -> None:
    """submit() returns a concurrent.futures.Future; map() a list of them, in order."""
    future = shared.submit(fluster_tasks.square, 7)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(WAIT) == 49
    futures = shared.map(fluster_tasks.square, range(8))
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
    seen = [f.result(WAIT) for f in shared.map(lambda _: fluster_tasks.whoami(), range(6))]
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
        shared.submit(fluster_tasks.raise_value_error, 3).result(WAIT)
    with pytest.raises(fluster_tasks.TaskError, match="custom failure"):
        shared.submit(fluster_tasks.raise_task_error).result(WAIT)
    with pytest.raises(RemoteError, match="Unpicklable: cannot pickle me"):
        shared.submit(fluster_tasks.raise_unpicklable).result(WAIT)
    after = shared.status()
    assert after.tasks_failed == before.tasks_failed + 3
    assert after.workers_failed == 0


def test_unserializable_input_raises_at_submit(shared: WorkerPool) -> None:
    """What cannot be pickled raises TypeError from submit() itself and queues nothing;
    what cloudpickle can send (lambdas, closures) runs."""
    lock = threading.Lock()
    before = shared.status().tasks_queued
    with pytest.raises(TypeError, match="cannot send square"):
        shared.submit(fluster_tasks.square, lock)  # type: ignore[arg-type]
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


def test_oversized_result_comes_back_as_value_error() -> None:
    """A result too heavy for one reply frame fails its task with ValueError, and the worker's
    stream serves the next task as usual (the executor actor over a socket pair)."""
    key = b"k" * 32
    left, right = socket.socketpair()
    client = FrameChannel(left, left.makefile("rb"), key, is_client=True)
    server = FrameChannel(right, right.makefile("rb"), key, is_client=False, max_body=4096)
    serving = ContextThread(target=_TaskExecutor().serve, args=(server,), daemon=True)
    serving.start()
    try:
        client.settimeout(WAIT)
        client.send(_pickle.dumps((bytes, (8192,), {}, ())))
        ok, error = decode_reply(client.recv() or b"")
        assert not ok
        assert isinstance(error, ValueError)
        assert "more than a reply may carry (4096)" in str(error)
        client.send(_pickle.dumps((bytes, (16,), {}, ())))
        assert decode_reply(client.recv() or b"") == (True, bytes(16))
    finally:
        client.close()
        joined(serving)
        server.close()


def test_context_vars_travel_with_tasks(shared: WorkerPool) -> None:
    """Values of config.context_vars at submit() are set around the call in the worker;
    unset ones stay unset; nothing a task sets reaches later tasks or the submitter."""

    def submit_with(request_id: str | None, tenant: str | None) -> Any:
        def inner() -> Any:
            if request_id is not None:
                fluster_tasks.REQUEST_ID.set(request_id)
            if tenant is not None:
                fluster_tasks.TENANT.set(tenant)
            return shared.submit(fluster_tasks.read_vars)

        return contextvars.Context().run(inner)

    assert submit_with("req-7", None).result(WAIT) == ("req-7", "<unset>")
    assert submit_with("req-8", "acme").result(WAIT) == ("req-8", "acme")
    writers = [shared.submit(fluster_tasks.set_and_read_vars, f"w{i}") for i in range(4)]
    assert [f.result(WAIT) for f in writers] == [(f"w{i}", f"w{i}") for i in range(4)]
    readers = [submit_with(None, None) for _ in range(4)]
    assert [f.result(WAIT) for f in readers] == [("-", "<unset>")] * 4
    assert fluster_tasks.TENANT.get("<unset>") == "<unset>"


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
    import http.client

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
    assert shared.submit(fluster_tasks.square, 12).result(WAIT) == 144


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
            futures = pools[ns].map(lambda _: fluster_tasks.whoami(), range(10))
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


# -- tasks in flight ------------------------------------------------------------


def recording_pool(
    cluster: LocalCluster, job_id: str, config: WorkerPoolConfig
) -> tuple[WorkerPool, queue.Queue[tuple[str, int]]]:
    """Enter a pool whose dispatchers report each task they send to the returned queue."""
    sent: queue.Queue[tuple[str, int]] = queue.Queue()

    class RecordingDispatcher(WorkerDispatcher):
        def _send(self, task: _Task) -> bool:
            delivered = super()._send(task)
            sent.put((task.fn_name, len(self._worker.in_flight)))
            return delivered

    class RecordingPool(WorkerPool):
        dispatcher_class = RecordingDispatcher

    with fluster_ctx_scope(cluster.context(job_id)):
        pool = RecordingPool(cluster.client(), config, timeout=WAIT).__enter__()
    return pool, sent


def run_gated(
    pool: WorkerPool, sent: queue.Queue[tuple[str, int]], gate: Gate, result: str
) -> tuple[concurrent.futures.Future[Any], int]:
    """Submit a gated task to an idle pool; return its future and pid once it runs, alone."""
    future = pool.submit(fluster_tasks.report_and_wait, gate.address, result)
    pid = gate.arrive()
    assert sent.get(timeout=WAIT) == ("report_and_wait", 1)
    return future, pid


def hold_two(
    pool: WorkerPool, sent: queue.Queue[tuple[str, int]], gate: Gate, busy_pid: int
) -> tuple[concurrent.futures.Future[Any], concurrent.futures.Future[Any], int]:
    """Queue a gated task and a small one behind the task running in ``busy_pid``, release
    that one, and return both futures and the pid now running the gated task, once the
    worker holds both: the small one waits in its connection."""
    gated = pool.submit(fluster_tasks.report_and_wait, gate.address, "gated")
    small = pool.submit(fluster_tasks.square, 3)
    gate.release(busy_pid)
    pid = gate.arrive()
    assert sent.get(timeout=WAIT) == ("report_and_wait", 1)
    assert sent.get(timeout=WAIT) == ("square", 2)
    assert pool.status().tasks_queued == 0
    return gated, small, pid


def test_busy_worker_is_handed_its_next_small_task(cluster: LocalCluster, gate: Gate) -> None:
    """A worker running a task, with no other worker idle, is sent the next small task at
    once; it waits in the connection and runs when the first is done, in order."""
    pool, sent = recording_pool(cluster, "job-hold", WorkerPoolConfig(num_workers=1))
    try:
        first, pid = run_gated(pool, sent, gate, "first")
        gated, small, pid = hold_two(pool, sent, gate, pid)
        assert first.result(WAIT) == "first"
        [detail] = pool.status().worker_details
        assert detail["status"] == "BUSY"
        assert not small.done()
        gate.release(pid)
        assert (gated.result(WAIT), small.result(WAIT)) == ("gated", 9)
        assert pool.status().tasks_completed == 3
    finally:
        pool.shutdown(wait=True)


def test_large_task_is_not_sent_to_a_busy_worker(cluster: LocalCluster, gate: Gate) -> None:
    """A task larger than ``max_waiting_size`` next in the queue (cancelled tasks ahead of
    it aside) is not handed to a busy worker: it waits for one holding nothing, so big
    payloads never queue up in a connection behind a running task."""
    pool, sent = recording_pool(cluster, "job-large", WorkerPoolConfig(num_workers=1))
    size = UNSENDABLE
    try:
        first, pid = run_gated(pool, sent, gate, "first")
        gated = pool.submit(fluster_tasks.report_and_wait, gate.address, "gated")
        skipped = pool.submit(fluster_tasks.square, 2)
        big = pool.submit(len, b"x" * size)
        assert skipped.cancel()
        gate.release(pid)
        pid = gate.arrive()
        assert sent.get(timeout=WAIT) == ("report_and_wait", 1)
        assert first.result(WAIT) == "first"
        gate.release(pid)
        assert (gated.result(WAIT), big.result(WAIT)) == ("gated", size)
        assert sent.get(timeout=WAIT) == ("len", 1)
    finally:
        pool.shutdown(wait=True)


def test_worker_killed_holding_two_tasks_fails_both(cluster: LocalCluster, gate: Gate) -> None:
    """With no retries, a worker killed while running one task and holding the next fails
    both with WorkerFailedError: a task sent to a worker is never known not to have run."""
    pool, sent = recording_pool(
        cluster, "job-hold-kill", WorkerPoolConfig(num_workers=1, max_retries=0)
    )
    try:
        first, pid = run_gated(pool, sent, gate, "first")
        gated, small, pid = hold_two(pool, sent, gate, pid)
        assert first.result(WAIT) == "first"
        gate.kill(pid)
        with pytest.raises(WorkerFailedError, match="while running"):
            gated.result(WAIT)
        with pytest.raises(WorkerFailedError, match="before it could run"):
            small.result(WAIT)
        assert pool.status().tasks_failed == 2
    finally:
        pool.shutdown(wait=True)


def test_worker_killed_holding_two_tasks_retries_both_in_order(
    cluster: LocalCluster, gate: Gate
) -> None:
    """With a retry left, both tasks a killed worker held go back to the front of the
    queue, in order, and complete on the other worker."""
    pool, sent = recording_pool(
        cluster, "job-hold-retry", WorkerPoolConfig(num_workers=2, max_retries=1)
    )
    try:
        pool.wait_for_workers(timeout=WAIT)
        busy = [pool.submit(fluster_tasks.report_and_wait, gate.address) for _ in range(2)]
        pids = [gate.arrive(), gate.arrive()]
        assert [sent.get(timeout=WAIT) for _ in pids] == [("report_and_wait", 1)] * 2
        gated, small, victim = hold_two(pool, sent, gate, pids[0])
        [other] = [p for p in pids if p != victim]
        gate.kill(victim)
        gate.release(other)
        assert gate.arrive() == other
        assert sent.get(timeout=WAIT) == ("report_and_wait", 1)
        assert sent.get(timeout=WAIT) == ("square", 2)
        gate.release(other)
        assert (gated.result(WAIT), small.result(WAIT)) == ("gated", 9)
        assert {f.result(WAIT) for f in busy} == set(pids)
        status = pool.status()
        assert (status.workers_failed, status.tasks_failed) == (1, 0)
    finally:
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
        doomed = pool.submit(fluster_tasks.report_and_wait, gate.address)
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

        last = pool.submit(fluster_tasks.report_and_wait, gate.address)
        assert gate.arrive() == survivor
        queued = queue_behind_busy(pool, 3)
        gate.kill(survivor)
        with pytest.raises(WorkerFailedError):
            last.result(WAIT)
        for future in queued:
            with pytest.raises(PoolBrokenError):
                future.result(WAIT)
        with pytest.raises(PoolBrokenError):
            pool.submit(fluster_tasks.square, 1)
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
        future = pool.submit(fluster_tasks.report_and_wait, gate.address)
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


def test_task_outliving_the_timeout_fails_and_its_worker_is_stopped(
    cluster: LocalCluster, gate: Gate
) -> None:
    """A task that runs past the pool's timeout fails with WorkerFailedError (no retries
    left), and its worker, whose state is unknown, is FAILED and terminated."""
    pool = make_pool(cluster, "job-slow", WorkerPoolConfig(num_workers=1), timeout=1.0)
    try:
        stuck = pool.submit(fluster_tasks.report_and_wait, gate.address)
        pid = gate.arrive()
        with pytest.raises(WorkerFailedError, match="RpcTimeoutError"):
            stuck.result(WAIT)
        detail = detail_for_pid(pool, pid)
        assert detail["status"] == "FAILED"
        assert cluster.client().wait(detail["job_id"], WAIT) is not None
        assert not pid_alive(pid)
    finally:
        pool.shutdown(wait=True)


def test_worker_dying_while_idle_is_noticed(cluster: LocalCluster, watch_log: Any) -> None:
    """A worker killed between tasks is marked FAILED by its dispatcher; tasks go to the
    worker that remains and none is lost."""
    pool = make_pool(cluster, "job-idle", WorkerPoolConfig(num_workers=2))
    try:
        pool.wait_for_workers(timeout=WAIT)
        failed: LogWatcher = watch_log("failed: job exited")
        victim = pool.status().worker_details[0]
        os.kill(victim["pid"], signal.SIGKILL)
        assert failed.seen.wait(WAIT)
        assert detail_for_pid(pool, victim["pid"])["status"] == "FAILED"
        pids = {f.result(WAIT) for f in pool.map(lambda _: os.getpid(), range(4))}
        assert victim["pid"] not in pids
    finally:
        pool.shutdown(wait=True)


class _ExitUnreported:
    """A local job whose exit ``poll()`` never reports, as on a remote cluster that has not
    noticed yet: its dispatcher learns of the death only by failing to reach it."""

    def __init__(self, handle: JobHandle) -> None:
        self._handle = handle

    @property
    def pid(self) -> int | None:
        return self._handle.pid

    def poll(self) -> int | None:
        return None

    def wait(self, timeout: float) -> int | None:
        return self._handle.wait(timeout)

    def terminate(self, grace: float) -> None:
        self._handle.terminate(grace)


class ExitUnreportedLauncher(LocalProcessLauncher):
    """Launch local jobs whose exits ``poll()`` never reports."""

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        return _ExitUnreported(super().launch(job_id, command, env))


def test_tasks_for_a_dead_worker_are_never_lost(gate: Gate, watch_log: Any) -> None:
    """A task handed to a worker that died while idle, which cannot be reached any more, goes
    back to the queue without using up a retry (there are none here) and runs elsewhere; the
    dead worker is marked FAILED."""
    with LocalCluster(launcher=ExitUnreportedLauncher()) as cluster:
        pool = make_pool(cluster, "job-dead", WorkerPoolConfig(num_workers=2, max_retries=0))
        try:
            pool.wait_for_workers(timeout=WAIT)
            victim = pool.status().worker_details[0]
            os.kill(victim["pid"], signal.SIGKILL)
            assert cluster.client().wait(victim["job_id"], WAIT) is not None
            unreachable = watch_log("1 re-queued")
            # The gated task keeps the live worker busy, and a busy worker takes no second
            # task while another is idle: the dead worker's dispatcher must take one.
            gated = pool.submit(fluster_tasks.report_and_wait, gate.address, "gated")
            busy = gate.arrive()
            assert busy != victim["pid"]
            futures = [pool.submit(os.getpid) for _ in range(6)]
            assert unreachable.seen.wait(WAIT)
            assert detail_for_pid(pool, victim["pid"])["status"] == "FAILED"
            gate.release(busy)
            assert gated.result(WAIT) == "gated"
            assert {f.result(WAIT) for f in futures} == {busy}
            status = pool.status()
            assert (status.tasks_completed, status.tasks_failed) == (7, 0)
        finally:
            pool.shutdown(wait=True)


def test_errors_survive_pickling() -> None:
    """WorkerFailedError keeps its fields through pickle (tasks may re-raise it remotely)."""
    import pickle

    error = WorkerFailedError("boom", worker_id="worker-1", job_id="j/w", task_id="task-3")
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.worker_id, copy.job_id, copy.task_id) == (
        "boom",
        "worker-1",
        "j/w",
        "task-3",
    )


# -- shutdown -----------------------------------------------------------------


def test_shutdown_wait_drains_queued_tasks(
    cluster: LocalCluster, gate: Gate, watch_log: Any
) -> None:
    """shutdown(wait=True) while tasks are queued lets them all run, then terminates the
    worker jobs; submit() afterwards raises RuntimeError."""
    pool = make_pool(cluster, "job-drain", WorkerPoolConfig(num_workers=1))
    blocked = pool.submit(fluster_tasks.report_and_wait, gate.address, "unblocked")
    pid = gate.arrive()
    queued = queue_behind_busy(pool, 3)
    assert pool.status().tasks_queued == 3
    started: LogWatcher = watch_log("shutting down")
    stopper = ContextThread(target=pool.shutdown, kwargs={"wait": True})
    stopper.start()
    assert started.seen.wait(WAIT)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(fluster_tasks.square, 9)
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
    running = pool.submit(fluster_tasks.report_and_wait, gate.address)
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
        pool.submit(fluster_tasks.square, 1)
    pool.shutdown(wait=True)  # a second call is harmless


def test_shutdown_cancel_futures_and_user_cancel(cluster: LocalCluster, gate: Gate) -> None:
    """A queued future cancelled by its owner is skipped; shutdown(cancel_futures=True)
    cancels the rest at once, while the running task still completes."""
    pool = make_pool(cluster, "job-cancel", WorkerPoolConfig(num_workers=1))
    running = pool.submit(fluster_tasks.report_and_wait, gate.address, "finished")
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
