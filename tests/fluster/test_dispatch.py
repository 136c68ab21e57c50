"""WorkerDispatcher: finding its worker in the creator's context, feeding it, noticing it fail.

Real worker processes: the dispatcher's job is to keep a pool's promises when
workers are slow, busy, unreachable or killed.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import signal
import sys
import threading
from typing import Any, Mapping, Sequence

import pytest

from contextthreads.fluster import (
    JobHandle,
    LocalCluster,
    LocalProcessLauncher,
    PoolBrokenError,
    WorkerDispatcher,
    WorkerFailedError,
    WorkerPool,
    WorkerPoolConfig,
    fluster_ctx_scope,
)
from contextthreads.fluster._pool_types import Task

from . import tasks
from .pools import UNSENDABLE, detail_for_pid, make_pool, queue_behind_busy
from .support import PLAIN_THREADS_INHERIT, WAIT, Gate, LogWatcher, pid_alive

pytest.importorskip("cloudpickle")


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
        if PLAIN_THREADS_INHERIT:
            with pool:
                assert pool.submit(tasks.square, 4).result(WAIT) == 16
            return
        with pytest.raises(PoolBrokenError, match="needs a FlusterContext"):
            pool.__enter__()
    [detail] = pool.status().worker_details
    assert detail["status"] == "FAILED"
    assert "RuntimeError" in detail["error"]


# -- tasks in flight ------------------------------------------------------------


def recording_pool(
    cluster: LocalCluster, job_id: str, config: WorkerPoolConfig
) -> tuple[WorkerPool, queue.Queue[tuple[str, int]]]:
    """Enter a pool whose dispatchers report each task they send to the returned queue."""
    sent: queue.Queue[tuple[str, int]] = queue.Queue()

    class RecordingDispatcher(WorkerDispatcher):
        def _send(self, task: Task) -> bool:
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
    future = pool.submit(tasks.report_and_wait, gate.address, result)
    pid = gate.arrive()
    assert sent.get(timeout=WAIT) == ("report_and_wait", 1)
    return future, pid


def hold_two(
    pool: WorkerPool, sent: queue.Queue[tuple[str, int]], gate: Gate, busy_pid: int
) -> tuple[concurrent.futures.Future[Any], concurrent.futures.Future[Any], int]:
    """Queue a gated task and a small one behind the task running in ``busy_pid``, release
    that one, and return both futures and the pid now running the gated task, once the
    worker holds both: the small one waits in its connection."""
    gated = pool.submit(tasks.report_and_wait, gate.address, "gated")
    small = pool.submit(tasks.square, 3)
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
        gated = pool.submit(tasks.report_and_wait, gate.address, "gated")
        skipped = pool.submit(tasks.square, 2)
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
        busy = [pool.submit(tasks.report_and_wait, gate.address) for _ in range(2)]
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


def test_task_outliving_the_timeout_fails_and_its_worker_is_stopped(
    cluster: LocalCluster, gate: Gate
) -> None:
    """A task that runs past the pool's timeout fails with WorkerFailedError (no retries
    left), and its worker, whose state is unknown, is FAILED and terminated."""
    pool = make_pool(cluster, "job-slow", WorkerPoolConfig(num_workers=1), timeout=1.0)
    try:
        stuck = pool.submit(tasks.report_and_wait, gate.address)
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
            gated = pool.submit(tasks.report_and_wait, gate.address, "gated")
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


def test_a_task_for_a_worker_that_died_idle_after_serving_is_not_lost(gate: Gate) -> None:
    """A worker that served tasks and then died while idle, its exit not reported yet, costs
    no task: its dispatcher sees the stream hung up before sending, the task goes back to
    the queue without using up a retry (there are none) and runs on the other worker."""
    with LocalCluster(launcher=ExitUnreportedLauncher()) as cluster:
        pool = make_pool(cluster, "job-died", WorkerPoolConfig(num_workers=2, max_retries=0))
        try:
            pool.wait_for_workers(timeout=WAIT)
            served = [pool.submit(tasks.report_and_wait, gate.address) for _ in range(2)]
            pids = [gate.arrive(), gate.arrive()]
            for pid in pids:
                gate.release(pid)
            assert sorted(f.result(WAIT) for f in served) == sorted(pids)
            victim, survivor = pids
            victim_job = detail_for_pid(pool, victim)["job_id"]
            os.kill(victim, signal.SIGKILL)
            assert cluster.client().wait(victim_job, WAIT) is not None
            gated = pool.submit(tasks.report_and_wait, gate.address, "gated")
            assert gate.arrive() == survivor
            # The victim's dispatcher may take one of these (BUSY for a moment) before it
            # sees the hang-up: what is pinned is where they run and what it costs.
            futures = [pool.submit(os.getpid) for _ in range(6)]
            gate.release(survivor)
            assert gated.result(WAIT) == "gated"
            assert {f.result(WAIT) for f in futures} == {survivor}
            assert detail_for_pid(pool, victim)["status"] == "FAILED"
            status = pool.status()
            assert (status.tasks_failed, status.workers_failed) == (0, 1)
        finally:
            pool.shutdown(wait=True)


class NeverRegistersLauncher(LocalProcessLauncher):
    """Launch each pool's worker 0 as a process that never registers, the others as usual."""

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        if job_id.endswith("-0"):
            command = [sys.executable, "-c", "import threading; threading.Event().wait()"]
        return super().launch(job_id, command, env)


def test_every_future_ends_with_dead_stopped_and_unregistered_workers(gate: Gate) -> None:
    """Of three workers, one never registers, one is stopped (SIGSTOP) and one killed while
    running a task each: the first is FAILED once registration_timeout has passed, the
    second once its task outlives the timeout, the third at once, and every job is stopped;
    every future ends, the queued ones with PoolBrokenError naming all three failures."""
    with LocalCluster(launcher=NeverRegistersLauncher()) as cluster:
        config = WorkerPoolConfig(num_workers=3, registration_timeout=2.0)
        pool = make_pool(cluster, "job-mix", config, timeout=2.0)
        try:
            pool.wait_for_workers(min_workers=2, timeout=WAIT)
            running = [pool.submit(tasks.report_and_wait, gate.address) for _ in range(2)]
            stopped, killed = gate.arrive(), gate.arrive()
            queued = queue_behind_busy(pool, 5)
            os.kill(stopped, signal.SIGSTOP)
            gate.kill(killed)
            for future in running:
                with pytest.raises(WorkerFailedError):
                    future.result(WAIT)
            for future in queued:
                with pytest.raises(PoolBrokenError) as info:
                    future.result(WAIT)
                assert "did not register within 2.0s" in str(info.value)
                assert "RpcTimeoutError" in str(info.value)
            details = pool.status().worker_details
            assert [d["status"] for d in details] == ["FAILED"] * 3
            assert details[0]["error"] == "did not register within 2.0s"
            for detail in details:
                assert cluster.client().wait(detail["job_id"], WAIT) is not None
        finally:
            pool.shutdown(wait=True)
