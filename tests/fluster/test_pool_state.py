"""PoolState, the pool's state machine, driven directly: no processes, no sockets, milliseconds.

The direct tests pin one transition each. ``PoolMachine`` lets hypothesis
drive every transition in any order (submit, dispatch, finish, fail with and
without retries, worker death, user cancellation, shutdown) and checks after
each step that a task is in exactly one of queue, in flight, settled, and at
the end that every future has ended.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, List, Optional

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from contextthreads.fluster import (
    PoolBrokenError,
    PoolShutdownError,
    WorkerFailedError,
    WorkerStatus,
)
from contextthreads.fluster._pool_state import STOP, PoolPhase, PoolState
from contextthreads.fluster._pool_types import Task, Worker

SMALL, LARGE = b"s" * 8, b"L" * 64
#: Tasks over this size are not handed to a busy worker.
MAX_WAITING = 32
#: The pool machine shuts its pool down in one step in about this many.
RARE = 25


def running(num_workers: int = 2, max_retries: int = 0, *, ready: bool = True) -> PoolState:
    """Return a RUNNING pool state with ``num_workers`` workers, ready unless told not."""
    state = PoolState("p", num_workers, max_retries)
    state.begin_start()
    for index in range(num_workers):
        state.add_worker(Worker(index, f"w{index}", f"job-{index}"))
    assert state.start_running()
    if ready:
        for index, worker in enumerate(state.workers()):
            assert state.worker_ready(worker, f"http://127.0.0.1:{index + 1}", 100 + index)
    return state


def taken(state: PoolState, worker: Worker) -> Task:
    """Return the task ``next_task()`` hands ``worker`` at once; fail if there is none."""
    task = state.next_task(worker, 0)
    assert isinstance(task, Task)
    return task


def error_of(future: Future[Any]) -> BaseException | None:
    """Return the exception ``future`` (which must be done) ended with."""
    assert future.done()
    return future.exception(0)


# -- one transition at a time ---------------------------------------------------


def test_phases_gate_starting_and_submitting() -> None:
    """A pool starts once; it takes tasks only while RUNNING; shut down meanwhile, it never
    runs."""
    state = PoolState("p", 1, 0)
    assert state.phase is PoolPhase.NEW
    with pytest.raises(RuntimeError, match="not started"):
        state.submit("f", SMALL)
    state.begin_start()
    with pytest.raises(RuntimeError, match="only once"):
        state.begin_start()
    assert state.shut_down() == (True, False)
    assert not state.start_running()
    with pytest.raises(RuntimeError, match="has been shut down"):
        state.check_accepting()
    assert state.shut_down() == (False, False)
    state.stop()
    assert (state.phase, state.stopping.is_set()) == (PoolPhase.STOPPED, True)


def test_a_task_goes_from_queue_to_worker_to_its_future() -> None:
    """Tasks leave the queue oldest first; the worker is BUSY while it holds one and IDLE
    again once it is answered; results and exceptions reach the futures and the counts."""
    state = running(1)
    [worker] = state.workers()
    first, second = state.submit("f", SMALL), state.submit("g", SMALL)
    assert state.queued() == [first, second]
    assert taken(state, worker) is first
    assert (worker.status, list(worker.in_flight)) == (WorkerStatus.BUSY, [first])
    assert first.future.running()
    state.task_finished(worker, True, 42)
    assert first.future.result(0) == 42
    assert worker.status is WorkerStatus.IDLE
    assert taken(state, worker) is second
    state.task_finished(worker, False, KeyError("k"))
    assert isinstance(error_of(second.future), KeyError)
    status = state.status()
    assert (status.tasks_completed, status.tasks_failed, status.tasks_queued) == (1, 1, 0)
    assert status.worker_details[0]["tasks_completed"] == 1


def test_next_task_times_out_stops_and_skips_cancelled_tasks() -> None:
    """With nothing queued next_task() returns None once its time is up; a task cancelled
    while queued is skipped; after stop(), or for a failed worker, it returns STOP."""
    state = running(2)
    first, second = state.workers()
    assert state.next_task(first, 0) is None
    skipped, kept = state.submit("f", SMALL), state.submit("g", SMALL)
    assert skipped.future.cancel()
    assert taken(state, first) is kept
    state.worker_failed(second, "gone")
    assert state.next_task(second, 0) is STOP
    state.stop()
    assert state.next_task(first, 0) is STOP


def test_a_busy_worker_gets_one_more_small_task_only_when_no_worker_is_idle() -> None:
    """next_task_nowait() hands a busy worker the next task only if no other worker is idle
    and the task is small enough; a big one waits for an idle worker."""
    state = running(2)
    first, second = state.workers()
    state.submit("a", SMALL)
    taken(state, first)
    state.submit("b", SMALL)
    assert state.next_task_nowait(first, MAX_WAITING) is None  # second is idle
    taken(state, second)
    big, small = state.submit("big", LARGE), state.submit("small", SMALL)
    assert state.next_task_nowait(first, MAX_WAITING) is None  # big heads the queue
    state.task_finished(second, True, None)
    assert taken(state, second) is big
    assert state.next_task_nowait(first, MAX_WAITING) is small
    assert [t.fn_name for t in first.in_flight] == ["a", "small"]


def test_a_failed_workers_tasks_are_retried_in_order_at_the_front() -> None:
    """The tasks a failed worker held (the running one, and the one waiting behind it) go
    back to the front of the queue in order, using up a retry each; with none left they fail
    with WorkerFailedError, "while running" and "before it could run"."""
    state = running(2, max_retries=1)
    first, second = state.workers()
    state.submit("x", SMALL)
    taken(state, second)
    running_task, waiting_task = state.submit("a", SMALL), state.submit("b", SMALL)
    assert taken(state, first) is running_task
    assert state.next_task_nowait(first, MAX_WAITING) is waiting_task
    assert state.worker_failed(first, "killed") == 2
    assert state.worker_failed(first, "again") is None
    later = state.submit("c", SMALL)
    assert state.queued() == [running_task, waiting_task, later]
    assert (running_task.retries_left, waiting_task.retries_left, later.retries_left) == (0, 0, 1)
    assert not running_task.future.done()
    state.task_finished(second, True, None)
    assert taken(state, second) is running_task
    assert state.next_task_nowait(second, MAX_WAITING) is waiting_task
    assert state.worker_failed(second, "killed too") == 0
    lost, unrun = error_of(running_task.future), error_of(waiting_task.future)
    assert isinstance(lost, WorkerFailedError)
    assert isinstance(unrun, WorkerFailedError)
    assert "while running task-1 (a): killed too" in str(lost)
    assert "before it could run task-2 (b)" in str(unrun)
    assert (lost.worker_id, lost.job_id, lost.task_id) == ("worker-1", "job-1", "task-1")
    assert isinstance(error_of(later.future), PoolBrokenError)


def test_undelivered_tasks_go_back_for_free_and_a_broken_pool_fails_the_rest() -> None:
    """A task that never reached its worker is re-queued without using a retry; once every
    worker has failed, queued tasks fail with PoolBrokenError and submit() raises it."""
    state = running(2, max_retries=0)
    first, second = state.workers()
    task = state.submit("a", SMALL)
    taken(state, first)
    assert state.worker_failed(first, "connection refused", delivered=False) == 1
    assert state.queued() == [task]
    assert task.retries_left == 0
    state.worker_failed(second, "gone")
    broken = error_of(task.future)
    assert isinstance(broken, PoolBrokenError)
    assert "worker-0: lost while running task-0: connection refused; worker-1: gone" in str(broken)
    with pytest.raises(PoolBrokenError):
        state.submit("b", SMALL)
    assert state.status().tasks_failed == 1


def test_shutdown_cancels_or_drains_and_stop_settles_everything_left() -> None:
    """shut_down(cancel_futures=True) cancels what is queued; stop() settles what is still
    queued (cancelled if it never ran, PoolShutdownError if it did); a worker failing after
    stop() fails its tasks with PoolShutdownError, never re-queues them."""
    state = running(2, max_retries=1)
    first, second = state.workers()
    held, retried = state.submit("a", SMALL), state.submit("b", SMALL)
    taken(state, first)
    taken(state, second)
    state.worker_failed(second, "killed")
    assert state.queued() == [retried]
    queued = state.submit("c", SMALL)
    assert state.shut_down(cancel_futures=False) == (True, True)
    assert not state.wait_until_drained(0)
    state.stop()
    assert queued.future.cancelled()
    assert isinstance(error_of(retried.future), PoolShutdownError)
    state.worker_failed(first, "terminated")
    shut = error_of(held.future)
    assert isinstance(shut, PoolShutdownError)
    assert "shut down while task-0 (a) ran on worker-0" in str(shut)

    other = running(1)
    cancelled = other.submit("d", SMALL)
    other.shut_down(cancel_futures=True)
    assert cancelled.future.cancelled()
    assert other.wait_until_drained(0)


def test_waiting_for_workers() -> None:
    """wait_for_workers() returns once enough workers are ready, raises PoolBrokenError as
    soon as too few are left, TimeoutError when time is up, and refuses counts out of range."""
    state = running(2, ready=False)
    first, second = state.workers()
    with pytest.raises(TimeoutError, match="0 of 1 workers ready"):
        state.wait_for_workers(1, 0)
    assert state.worker_ready(first, "http://h:1", None)
    assert not state.worker_ready(first, "http://h:1", None)
    state.wait_for_workers(1, 0)
    state.worker_failed(second, "exited")
    with pytest.raises(PoolBrokenError, match="only 1 workers left, 2 needed"):
        state.wait_for_workers(None, 0)
    with pytest.raises(ValueError, match="min_workers"):
        state.wait_for_workers(3, 0)
    state.shut_down()
    with pytest.raises(RuntimeError, match=r"not running \(shutdown\)"):
        state.wait_for_workers(1, 0)


# -- every transition in any order -----------------------------------------------


class PoolMachine(RuleBasedStateMachine):
    """A pool whose dispatchers and users hypothesis plays, in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.state = PoolState("p", 1, 0)
        self.tasks: List[Task] = []
        self.completed = 0

    @initialize(ready=st.lists(st.booleans(), min_size=1, max_size=3), retries=st.integers(0, 2))
    def start(self, ready: List[bool], retries: int) -> None:
        self.state = running(len(ready), retries, ready=False)
        for worker, is_ready in zip(self.state.workers(), ready):
            if is_ready:
                self.state.worker_ready(worker, "http://h:1", 1)

    def those(self, *statuses: WorkerStatus, holding: bool | None = None) -> List[Worker]:
        return [
            w
            for w in self.state.workers()
            if w.status in statuses and (holding is None or bool(w.in_flight) == holding)
        ]

    def pick(self, index: int, *statuses: WorkerStatus, holding: bool | None = None) -> Worker:
        found = self.those(*statuses, holding=holding)
        return found[index % len(found)]

    def broken(self) -> bool:
        return all(w.status is WorkerStatus.FAILED for w in self.state.workers())

    @rule(large=st.booleans())
    def submit(self, large: bool) -> None:
        try:
            self.tasks.append(self.state.submit("fn", LARGE if large else SMALL))
        except PoolBrokenError:
            assert self.broken()
        except RuntimeError:
            assert self.state.phase is not PoolPhase.RUNNING

    @precondition(lambda self: self.those(WorkerStatus.PENDING))
    @rule(index=st.integers(0, 2))
    def worker_registers(self, index: int) -> None:
        worker = self.pick(index, WorkerStatus.PENDING)
        assert self.state.worker_ready(worker, "http://h:1", 1)
        assert not self.state.worker_ready(worker, "http://h:1", 1)

    @precondition(lambda self: self.those(WorkerStatus.IDLE, WorkerStatus.BUSY))
    @rule(index=st.integers(0, 2))
    def dispatch(self, index: int) -> None:
        # As WorkerDispatcher does: wait for a task when idle, else maybe hand one more.
        worker = self.pick(index, WorkerStatus.IDLE, WorkerStatus.BUSY)
        head = next((t for t in self.state.queued() if not t.future.cancelled()), None)
        task: Optional[object]
        if not worker.in_flight:
            task = self.state.next_task(worker, 0)
            if self.state.stopping.is_set():
                assert task is STOP
                return
            assert task is head
        elif len(worker.in_flight) < 2:
            someone_idle = bool(self.those(WorkerStatus.IDLE))
            task = self.state.next_task_nowait(worker, MAX_WAITING)
            assert task in (None, head)
            if isinstance(task, Task):
                assert not someone_idle
                assert len(task.payload) <= MAX_WAITING
        else:
            return
        if isinstance(task, Task):
            assert task.future.running()
            assert worker.in_flight[-1] is task

    @precondition(lambda self: self.those(WorkerStatus.BUSY))
    @rule(index=st.integers(0, 2), ok=st.booleans())
    def worker_answers(self, index: int, ok: bool) -> None:
        worker = self.pick(index, WorkerStatus.BUSY)
        task = worker.in_flight[0]
        self.state.task_finished(worker, ok, "done" if ok else ValueError("task failed"))
        assert task.future.done()
        self.completed += ok

    @precondition(lambda self: self.those(WorkerStatus.BUSY))
    @rule(index=st.integers(0, 2), delivered=st.booleans())
    def worker_dies_holding_tasks(self, index: int, delivered: bool) -> None:
        self.kill(self.pick(index, WorkerStatus.BUSY), delivered)

    @precondition(lambda self: self.those(WorkerStatus.PENDING, WorkerStatus.IDLE))
    @rule(index=st.integers(0, 2), draw=st.integers(1, RARE))
    def worker_dies_idle(self, index: int, draw: int) -> None:
        # Rare: a death is for good, and a dead pool has little left to show.
        if draw == RARE:
            self.kill(self.pick(index, WorkerStatus.PENDING, WorkerStatus.IDLE), True)

    def kill(self, worker: Worker, delivered: bool) -> None:
        held = [(task, task.retries_left) for task in worker.in_flight]
        stopping = self.state.stopping.is_set()
        requeued = self.state.worker_failed(worker, "killed", delivered=delivered)
        assert self.state.worker_failed(worker, "killed again") is None
        queued = self.state.queued()
        for task, retries in held:
            if stopping:
                assert isinstance(error_of(task.future), PoolShutdownError)
            elif delivered and not retries:
                assert isinstance(error_of(task.future), WorkerFailedError)
            elif self.broken():
                assert isinstance(error_of(task.future), PoolBrokenError)
            else:
                assert task in queued
                assert task.retries_left == retries - delivered
        back = [task for task, _ in held if task in queued]
        assert queued[: len(back)] == back
        assert requeued is not None
        assert requeued == len(back) or self.broken()

    @precondition(lambda self: self.tasks)
    @rule(index=st.integers(0, 1000))
    def user_cancels(self, index: int) -> None:
        task = self.tasks[index % len(self.tasks)]
        if task.future.cancel():
            assert not task.started

    # Shutting down ends the interesting part of a run: make it rare (one draw in RARE).

    @precondition(lambda self: self.state.phase is PoolPhase.RUNNING)
    @rule(cancel_futures=st.booleans(), draw=st.integers(1, RARE))
    def shut_down(self, cancel_futures: bool, draw: int) -> None:
        if draw == RARE:
            queued = self.state.queued()
            assert self.state.shut_down(cancel_futures) == (True, True)
            with pytest.raises(RuntimeError, match="shut down"):
                self.state.check_accepting()
            if cancel_futures:
                self.check_abandoned(queued)

    @precondition(lambda self: self.state.phase is PoolPhase.SHUTDOWN)
    @rule(draw=st.integers(1, RARE))
    def stop(self, draw: int) -> None:
        if draw == RARE:
            queued = self.state.queued()
            self.state.stop()
            assert not self.state.queued()
            self.check_abandoned(queued)

    def check_abandoned(self, tasks: List[Task]) -> None:
        # Given up on by shutdown: cancelled if they never ran, failed if they did.
        for task in tasks:
            if task.started:
                assert isinstance(error_of(task.future), PoolShutdownError)
            else:
                assert task.future.cancelled()

    @invariant()
    def every_task_is_in_exactly_one_place(self) -> None:
        queued = self.state.queued()
        workers = self.state.workers()
        for task in self.tasks:
            places = queued.count(task) + sum(list(w.in_flight).count(task) for w in workers)
            assert places <= 1
            if places == 0:
                assert task.future.done(), "settled"
            elif task in queued:
                # Queued: pending, running again (re-queued), or cancelled by its owner
                # and not yet skipped.
                assert not task.future.done() or task.future.cancelled()
            else:
                assert task.future.running(), "in flight"
            assert task.retries_left >= 0

    @invariant()
    def a_pool_without_workers_holds_no_task(self) -> None:
        if self.broken():
            assert not self.state.queued()

    @invariant()
    def workers_and_counts_agree(self) -> None:
        status = self.state.status()
        assert status.tasks_completed == self.completed
        done = sum(t.future.done() for t in self.tasks)
        assert status.tasks_completed + status.tasks_failed <= done
        assert status.tasks_queued == len(self.state.queued())
        for worker in self.state.workers():
            if worker.status in (WorkerStatus.PENDING, WorkerStatus.FAILED):
                assert not worker.in_flight
            else:
                assert (worker.status is WorkerStatus.BUSY) == bool(worker.in_flight)

    def teardown(self) -> None:
        # What WorkerPool.shutdown() does: stop, then the jobs are terminated, and each
        # dispatcher holding tasks sees its worker fail. After that, every future has ended.
        self.state.shut_down()
        self.state.stop()
        for worker in self.state.workers():
            if worker.in_flight:
                self.state.worker_failed(worker, "terminated")
        for task in self.tasks:
            assert task.future.done(), task.task_id
            if not task.future.cancelled() and isinstance(task.future.exception(0), RuntimeError):
                assert isinstance(
                    task.future.exception(0),
                    (WorkerFailedError, PoolBrokenError, PoolShutdownError),
                )


TestPoolMachine = PoolMachine.TestCase
