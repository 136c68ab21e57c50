"""Lifetimes: no captured value outlives its thread, task or call, even while workers idle.

Each test sets a fresh ``Payload`` in a ContextVar inside a throwaway
Context, hands work to a mechanism, waits for it, drops its own references,
and checks through a weakref that the payload was collected.
"""

from __future__ import annotations

import contextvars
import gc
import sys
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest
from bounds import WAIT
from conftest import ExceptHookRecorder, collect_garbage, joined

from contextthreads import ContextThread, ContextThreadPoolExecutor, ContextTimer, bind

var: contextvars.ContextVar[Any] = contextvars.ContextVar("test_weakrefs_var")


class Payload:
    """A value that can be weakly referenced."""


#: PyPy's Context.run is a Python function: a failure's traceback keeps its frame (as a
#: frame of the traceback, or as one's f_back), and with it the context it ran.
keeps_failed_contexts = pytest.mark.skipif(
    sys.implementation.name == "pypy",
    reason="PyPy's Context.run is a Python frame: a failure's traceback keeps the context",
)


def with_payload(action: Callable[[], Any]) -> tuple[weakref.ref[Payload], Any]:
    """Set a new Payload in a throwaway Context and call ``action`` there.

    Return a weakref to the payload and ``action``'s result; the Context and
    the payload itself are dropped on return.
    """

    def body() -> tuple[weakref.ref[Payload], Any]:
        payload = Payload()
        var.set(payload)
        return weakref.ref(payload), action()

    return contextvars.Context().run(body)


def assert_collected(ref: weakref.ref[Payload]) -> None:
    """Collect garbage, then check that the payload is gone."""
    collect_garbage()
    assert ref() is None, f"payload still alive, referrers: {gc.get_referrers(ref())!r:.500}"


def read_var() -> None:
    """Touch the variable, so the task really ran in the captured context."""
    assert isinstance(var.get(), Payload)


def drain(executor: ThreadPoolExecutor) -> None:
    """Wait until every worker of ``executor`` has let go of its previous work items.

    A worker sets a future's result before it drops the work item (and the
    context in it); a no-op task per worker, all held at a barrier, can only
    run once each worker has moved on.
    """
    workers = len(executor._threads)
    barrier = threading.Barrier(workers)
    futures = [executor.submit(barrier.wait, WAIT) for _ in range(workers)]
    for future in futures:
        future.result(timeout=WAIT)


@pytest.fixture
def one_worker() -> Iterator[ContextThreadPoolExecutor]:
    """A one-worker pool, created outside any payload context, left running during the test."""
    executor = contextvars.Context().run(ContextThreadPoolExecutor, 1)
    yield executor
    executor.shutdown(wait=True)


@pytest.mark.parametrize("kind", ["thread", "timer", "subclass"])
def test_thread_values_die_with_the_thread(kind: str) -> None:
    """A value current at start() is collected once the thread is joined, the Thread object kept."""

    class Subclass(ContextThread):
        def run(self) -> None:
            read_var()

    def start() -> threading.Thread:
        thread: threading.Thread
        if kind == "thread":
            thread = ContextThread(target=read_var)
        elif kind == "timer":
            thread = ContextTimer(0, read_var)
        else:
            thread = Subclass()
        thread.start()
        return thread

    ref, thread = with_payload(start)
    joined(thread)
    assert_collected(ref)
    assert thread is not None  # the Thread object itself is still referenced


@keeps_failed_contexts
def test_failing_thread_values_die_with_the_thread(excepthook: ExceptHookRecorder) -> None:
    """A thread that fails lets its context go too, after the excepthook ran."""

    def fail() -> None:
        read_var()
        raise ValueError("boom")

    ref, thread = with_payload(lambda: _started(ContextThread(target=fail)))
    joined(thread)
    assert [call.exc_type for call in excepthook.for_thread(thread)] == [ValueError]
    assert_collected(ref)


def _started(thread: threading.Thread) -> threading.Thread:
    thread.start()
    return thread


def test_explicit_context_is_not_kept_by_the_thread() -> None:
    """With context=ctx, the ended thread drops ctx: the caller's reference is the last."""
    ctx = contextvars.Context()
    payload = Payload()
    ctx.run(var.set, payload)
    ref = weakref.ref(payload)
    del payload
    thread = ContextThread(target=read_var, context=ctx)
    thread.start()
    joined(thread)
    del ctx
    assert_collected(ref)


def test_submitted_values_die_with_the_task_while_workers_live(
    one_worker: ContextThreadPoolExecutor,
) -> None:
    """A value current at submit() dies with the task, the future kept and the pool running."""
    ref, future = with_payload(lambda: one_worker.submit(read_var))
    assert future.result(timeout=WAIT) is None
    drain(one_worker)
    assert_collected(ref)
    assert len(one_worker._threads) == 1


@keeps_failed_contexts
def test_failed_task_values_die_with_the_task(one_worker: ContextThreadPoolExecutor) -> None:
    """A task that raises lets its context go too; the future keeps only the exception."""

    def fail() -> None:
        read_var()
        raise KeyError("boom")

    ref, future = with_payload(lambda: one_worker.submit(fail))
    assert isinstance(future.exception(timeout=WAIT), KeyError)
    drain(one_worker)
    assert_collected(ref)


def test_mapped_values_die_with_the_map(one_worker: ContextThreadPoolExecutor) -> None:
    """A value current at map() is collected once the results are consumed and dropped."""
    ref, results = with_payload(lambda: list(one_worker.map(lambda _: read_var(), range(3))))
    assert results == [None, None, None]
    drain(one_worker)
    assert_collected(ref)


@pytest.mark.skipif(sys.version_info < (3, 14), reason="map(buffersize=) is new in 3.14")
def test_buffered_map_values_die_with_the_iterator(one_worker: ContextThreadPoolExecutor) -> None:
    """With buffersize=, the map()-time value lives while the iterator does, and no longer."""
    ref, iterator = with_payload(
        lambda: one_worker.map(lambda _: read_var(), range(3), buffersize=1)  # type: ignore[call-arg, unused-ignore]
    )
    assert list(iterator) == [None, None, None]
    del iterator
    drain(one_worker)
    assert_collected(ref)


def test_idle_worker_created_by_a_submit_pins_nothing(
    one_worker: ContextThreadPoolExecutor,
) -> None:
    """The worker a submit() creates starts in an empty context: idle, it keeps no submitted value.

    This is the trio#3472 / anyio#887 bug class, which appears with
    PYTHON_THREAD_INHERIT_CONTEXT=1 on 3.14 if workers inherit the
    context of the submit() that created them.
    """
    assert len(one_worker._threads) == 0
    ref, future = with_payload(lambda: one_worker.submit(read_var))
    future.result(timeout=WAIT)
    assert len(one_worker._threads) == 1
    drain(one_worker)
    assert_collected(ref)


def test_many_idle_workers_pin_nothing() -> None:
    """Workers created by submits from several contexts keep none of their values once idle."""
    count = 3
    barrier = threading.Barrier(count)
    executor = contextvars.Context().run(ContextThreadPoolExecutor, count)
    try:
        refs_and_futures = [
            with_payload(lambda: executor.submit(barrier.wait, WAIT)) for _ in range(count)
        ]
        for _, future in refs_and_futures:
            future.result(timeout=WAIT)
        assert len(executor._threads) == count
        drain(executor)
        for ref, _ in refs_and_futures:
            assert_collected(ref)
    finally:
        executor.shutdown(wait=True)


@pytest.mark.skipif(
    not getattr(sys.flags, "thread_inherit_context", 0),
    reason="plain threads inherit context only with thread_inherit_context on",
)
def test_stdlib_pool_pins_submitters_values_under_the_flag() -> None:
    """Control: the stdlib pool's idle worker does keep its creator's values under the flag.

    This is what ``test_idle_worker_created_by_a_submit_pins_nothing``
    guards against; if it stops holding, that test no longer proves anything.
    """
    executor = contextvars.Context().run(ThreadPoolExecutor, 1)
    try:
        ref, future = with_payload(lambda: executor.submit(lambda: None))
        future.result(timeout=WAIT)
        drain(executor)
        gc.collect()
        assert ref() is not None
    finally:
        executor.shutdown(wait=True)


def test_bound_values_live_as_long_as_the_bound_callable() -> None:
    """bind() keeps the bound values while the callable lives; they die with it."""
    ref, bound = with_payload(lambda: bind(read_var))
    bound()
    gc.collect()
    assert ref() is not None
    del bound
    assert_collected(ref)


def test_values_written_in_a_bound_call_die_with_the_call() -> None:
    """What a call of a bound callable sets is dropped when the call returns."""
    refs: list[weakref.ref[Payload]] = []

    def write() -> None:
        payload = Payload()
        var.set(payload)
        refs.append(weakref.ref(payload))

    bound = bind(write)
    bound()
    assert_collected(refs[0])


def test_values_written_by_a_task_die_with_the_task(one_worker: ContextThreadPoolExecutor) -> None:
    """What a task sets is dropped when it ends, while its worker lives on."""
    refs: list[weakref.ref[Payload]] = []

    def write() -> None:
        payload = Payload()
        var.set(payload)
        refs.append(weakref.ref(payload))

    one_worker.submit(write).result(timeout=WAIT)
    drain(one_worker)
    assert_collected(refs[0])


# The initializer's captured context ------------------------------------------


def test_initializer_keeps_construction_values_until_the_executor_goes() -> None:
    """The initializer's construction-time values live as long as the executor, and no longer."""
    ref, executor = with_payload(lambda: ContextThreadPoolExecutor(1, initializer=read_var))
    executor.submit(lambda: None).result(timeout=WAIT)
    gc.collect()
    assert ref() is not None  # documented: held like bind() holds its context
    executor.shutdown(wait=True)
    del executor
    assert_collected(ref)


def test_without_initializer_construction_values_are_not_kept() -> None:
    """With no initializer, the executor keeps none of the values current at its construction."""
    ref, executor = with_payload(lambda: ContextThreadPoolExecutor(1))
    try:
        executor.submit(lambda: None).result(timeout=WAIT)
        drain(executor)
        assert_collected(ref)
    finally:
        executor.shutdown(wait=True)


def test_initializer_writes_die_when_it_returns() -> None:
    """ContextVar values the initializer sets are dropped when it returns, the worker idling on."""
    refs: list[weakref.ref[Payload]] = []

    def initializer() -> None:
        payload = Payload()
        var.set(payload)
        refs.append(weakref.ref(payload))

    executor = ContextThreadPoolExecutor(1, initializer=initializer)
    try:
        executor.submit(lambda: None).result(timeout=WAIT)
        drain(executor)
        assert_collected(refs[0])
    finally:
        executor.shutdown(wait=True)


def test_future_holds_no_context() -> None:
    """A done future references only its result: dropping the payload from the result frees it."""
    with ContextThreadPoolExecutor(1) as executor:
        ref, future = with_payload(lambda: executor.submit(lambda: "result"))
        assert isinstance(future, Future)
        assert future.result(timeout=WAIT) == "result"
        drain(executor)
        assert_collected(ref)
