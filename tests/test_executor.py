"""ContextThreadPoolExecutor: the stdlib's pool, with each task in its submitter's context."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import inspect
import logging
import sys
import threading
from concurrent.futures import BrokenExecutor, ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, Callable, Iterator

import pytest
from bounds import WAIT

import contextthreads
from contextthreads import ContextThreadPoolExecutor

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_executor_var")


def without_annotations(signature: inspect.Signature) -> inspect.Signature:
    """Return ``signature`` with names, kinds and defaults only."""
    return signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty,
    )


@pytest.fixture
def pool() -> Iterator[ContextThreadPoolExecutor]:
    """A two-worker pool, shut down after the test."""
    executor = ContextThreadPoolExecutor(max_workers=2)
    yield executor
    executor.shutdown(wait=True)


def fresh(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in an empty Context."""
    return contextvars.Context().run(fn)


@pytest.mark.parametrize("method", ["__init__", "submit", "map", "shutdown"])
def test_signatures_equal_the_stdlibs(method: str) -> None:
    """__init__ (with 3.14's **ctxkwargs), submit, map, shutdown: the stdlib's signatures."""
    ours = without_annotations(inspect.signature(getattr(ContextThreadPoolExecutor, method)))
    stdlib = inspect.signature(getattr(ThreadPoolExecutor, method))
    assert ours == stdlib


def test_is_a_thread_pool_executor_and_aliased() -> None:
    """ContextThreadPoolExecutor is a ThreadPoolExecutor, exported as ``ThreadPoolExecutor`` too."""
    assert issubclass(ContextThreadPoolExecutor, ThreadPoolExecutor)
    assert contextthreads.ThreadPoolExecutor is ContextThreadPoolExecutor
    with ContextThreadPoolExecutor(1) as executor:
        assert isinstance(executor, concurrent.futures.Executor)


def test_submit_sees_values_at_submit_and_leaks_nothing(pool: ContextThreadPoolExecutor) -> None:
    """A task sees the submitter's values at submit(); its writes stay in its own copy."""
    go = threading.Event()

    def task() -> str:
        assert go.wait(WAIT)
        seen = var.get("unset")
        var.set("task")
        return seen

    def body() -> None:
        var.set("at submit")
        future = pool.submit(task)
        var.set("after submit")
        go.set()
        assert future.result(timeout=WAIT) == "at submit"
        assert var.get() == "after submit"

    fresh(body)


def test_submit_passes_any_keyword_through(pool: ContextThreadPoolExecutor) -> None:
    """Keywords named like submit's or Context.run's own parameters reach the function."""

    def task(*args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    kwargs = {"fn": 1, "callable": 2, "self": 3, "context": 4}
    assert pool.submit(task, 0, **kwargs).result(timeout=WAIT) == ((0,), kwargs)


def test_exceptions_reach_the_future_as_in_stdlib(pool: ContextThreadPoolExecutor) -> None:
    """A task's exception is the future's exception, the very object raised."""
    error = ValueError("boom")

    def task() -> None:
        raise error

    future = pool.submit(task)
    assert future.exception(timeout=WAIT) is error
    with pytest.raises(ValueError, match="boom"):
        future.result(timeout=WAIT)


def test_submit_after_shutdown_raises_stdlib_error() -> None:
    """submit() after shutdown() raises the stdlib's RuntimeError with its message."""
    ours = ContextThreadPoolExecutor(1)
    stdlib = ThreadPoolExecutor(1)
    ours.shutdown()
    stdlib.shutdown()
    with pytest.raises(RuntimeError) as stdlib_error:
        stdlib.submit(print)
    with pytest.raises(RuntimeError, match="after shutdown") as our_error:
        ours.submit(print)
    assert str(our_error.value) == str(stdlib_error.value)


def test_submit_after_interpreter_shutdown_raises_stdlib_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once the interpreter is shutting down, submit() raises the stdlib's RuntimeError."""
    with ContextThreadPoolExecutor(1) as ours, ThreadPoolExecutor(1) as stdlib:
        monkeypatch.setattr(concurrent.futures.thread, "_shutdown", True)
        with pytest.raises(RuntimeError) as stdlib_error:
            stdlib.submit(print)
        with pytest.raises(RuntimeError, match="interpreter shutdown") as our_error:
            ours.submit(print)
        monkeypatch.undo()
    assert str(our_error.value) == str(stdlib_error.value)


def test_wrapper_of_stdlib_submit_is_still_called(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrapper patched onto ThreadPoolExecutor.submit (as tracers do) runs for our pool too.

    Patched after our pool was created, and the task still runs in the
    submitter's context.
    """
    wrapped: list[str] = []
    original = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        wrapped.append(var.get("unset"))
        return original(self, fn, *args, **kwargs)

    def body() -> str:
        var.set("submitter")
        with ContextThreadPoolExecutor(1) as ours:
            monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
            return ours.submit(var.get, "unset").result(timeout=WAIT)

    assert contextvars.Context().run(body) == "submitter"
    assert wrapped == ["submitter"]


def test_submit_of_a_class_between_ours_and_the_stdlibs_is_called() -> None:
    """In Mine(ContextThreadPoolExecutor, Mixin), Mixin's own submit() is called by ours."""
    wrapped: list[str] = []

    class Mixin(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            wrapped.append(var.get("unset"))
            return super().submit(fn, *args, **kwargs)

    class Mine(ContextThreadPoolExecutor, Mixin):
        pass

    class Plain(ContextThreadPoolExecutor):
        pass

    def body() -> tuple[str, str]:
        var.set("submitter")
        with Mine(1) as mine, Plain(1) as plain:
            return (
                mine.submit(var.get, "unset").result(timeout=WAIT),
                plain.submit(var.get, "unset").result(timeout=WAIT),
            )

    assert contextvars.Context().run(body) == ("submitter", "submitter")
    assert wrapped == ["submitter"]


@pytest.mark.skipif(sys.version_info < (3, 14), reason="prepare_context() is new in 3.14")
@pytest.mark.parametrize("place", ["subclass", "between"])
def test_own_prepare_context_is_kept_and_its_tasks_run_in_a_copy(place: str) -> None:
    """A prepare_context() of a subclass of ours, or of a class between ours and the stdlib's
    in the MRO, is used; each task still runs once, in a copy of its submitter's context."""
    resolved: list[str] = []

    class Recording(ThreadPoolExecutor):
        @classmethod
        def prepare_context(cls, initializer: Any, initargs: tuple[Any, ...]) -> Any:
            create, resolve = super().prepare_context(initializer, initargs)  # type: ignore[misc, unused-ignore]

            def recording_resolve(fn: Any, args: Any, kwargs: Any) -> Any:
                resolved.append(var.get("unset"))
                return resolve(fn, args, kwargs)

            return create, recording_resolve

    if place == "subclass":
        pool_class: type[ThreadPoolExecutor] = type(
            "Hooked", (Recording, ContextThreadPoolExecutor), {}
        )
    else:
        pool_class = type("Hooked", (ContextThreadPoolExecutor, Recording), {})

    def task(value: str) -> str:
        seen = var.get("unset")
        var.set(value)
        return seen

    def body() -> list[str]:
        var.set("submitter")
        with pool_class(2) as pool:
            results = [pool.submit(task, f"task {i}").result(timeout=WAIT) for i in range(3)]
        assert var.get() == "submitter"
        return results

    assert contextvars.Context().run(body) == ["submitter"] * 3
    assert resolved == ["submitter"] * 3


@pytest.mark.parametrize("kwargs", [{"max_workers": 0}, {"max_workers": -1}])
def test_bad_max_workers_raise_stdlib_error(kwargs: dict[str, Any]) -> None:
    """max_workers <= 0 raises the stdlib's ValueError."""
    with pytest.raises(ValueError, match="max_workers must be greater than 0"):
        ContextThreadPoolExecutor(**kwargs)


def test_unknown_keyword_raises_type_error_as_stdlib() -> None:
    """A keyword the stdlib does not know is a TypeError, as with the stdlib's pool."""
    unknown: dict[str, Any] = {"no_such_option": 1}
    with pytest.raises(TypeError):
        ThreadPoolExecutor(**unknown)
    with pytest.raises(TypeError):
        ContextThreadPoolExecutor(**unknown)


def test_thread_name_prefix_passes_through() -> None:
    """Workers are named from thread_name_prefix, as with the stdlib."""
    with ContextThreadPoolExecutor(1, thread_name_prefix="ctx-worker") as executor:
        name = executor.submit(lambda: threading.current_thread().name).result(timeout=WAIT)
    assert name.startswith("ctx-worker")


def test_map_sees_values_at_map_in_order(pool: ContextThreadPoolExecutor) -> None:
    """map() returns results in order, each item computed in the map()-time context."""

    def body() -> None:
        var.set("at map")
        results = pool.map(lambda i: (i, var.get("unset")), range(5), timeout=WAIT)
        var.set("after map")
        assert list(results) == [(i, "at map") for i in range(5)]

    fresh(body)


def test_map_with_several_iterables_and_chunksize(pool: ContextThreadPoolExecutor) -> None:
    """map() zips several iterables and accepts chunksize, as with the stdlib."""
    results = pool.map(lambda a, b: a * b, [1, 2, 3], [4, 5], timeout=WAIT, chunksize=7)
    assert list(results) == [4, 10]


def test_map_timeout_raises_timeout_error(pool: ContextThreadPoolExecutor) -> None:
    """map(timeout=0) on a task that has not finished raises TimeoutError, as with the stdlib."""
    release = threading.Event()
    try:
        results = pool.map(lambda _: release.wait(WAIT), [0], timeout=0)
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)
    finally:
        release.set()


def test_map_exception_is_raised_at_its_item(pool: ContextThreadPoolExecutor) -> None:
    """An item's exception is raised when iteration reaches it, as with the stdlib."""

    def task(i: int) -> int:
        if i == 1:
            raise KeyError(var.get("unset"))
        return i

    def body() -> None:
        var.set("ctx")
        results = pool.map(task, range(3), timeout=WAIT)
        assert next(results) == 0
        with pytest.raises(KeyError, match="ctx"):
            next(results)

    fresh(body)


@pytest.mark.skipif(sys.version_info < (3, 14), reason="map(buffersize=) is new in 3.14")
def test_map_buffersize_items_submitted_later_see_map_time_context() -> None:
    """With buffersize=, items submitted while the caller iterates still see the map() context.

    The caller changes its value after every item it receives; the items
    submitted during that iteration must not see those changes. The submits
    themselves run in a copy of the map()-time context, so that a wrapper of
    submit() (Sentry's) sees it too.
    """
    received: list[tuple[int, str]] = []
    # (items the caller had received, value the submit saw), per submit.
    submitted_at: list[tuple[int, str]] = []

    def task(i: int) -> tuple[int, str]:
        return i, var.get("unset")

    class Recording(ContextThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            submitted_at.append((len(received), var.get("unset")))
            return super().submit(fn, *args, **kwargs)

    def body() -> None:
        with Recording(max_workers=1) as executor:
            var.set("at map")
            results = executor.map(task, range(4), timeout=WAIT, buffersize=1)  # type: ignore[call-arg, unused-ignore]
            for n, item in enumerate(results):
                received.append(item)
                var.set(f"changed {n}")
        assert received == [(i, "at map") for i in range(4)]
        assert [seen for _, seen in submitted_at] == ["at map"] * 4
        # Proof that later items really were submitted while the caller iterated.
        assert max(count for count, _ in submitted_at) > 0

    fresh(body)


def test_run_in_executor_each_task_sees_its_own_values() -> None:
    """loop.run_in_executor from two tasks at once: each fn sees its own task's values."""
    barrier = threading.Barrier(2)

    def fn() -> str:
        barrier.wait(WAIT)  # both functions are running at the same time
        return var.get("unset")

    async def request(name: str, executor: ContextThreadPoolExecutor) -> str:
        var.set(name)
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    async def main() -> list[str]:
        with ContextThreadPoolExecutor(max_workers=2) as executor:
            return list(
                await asyncio.wait_for(
                    asyncio.gather(request("a", executor), request("b", executor)), WAIT
                )
            )

    assert asyncio.run(main()) == ["a", "b"]


def test_default_executor_of_a_loop() -> None:
    """As a loop's default executor, run_in_executor(None, fn) carries the task's values."""

    async def main() -> str:
        loop = asyncio.get_running_loop()
        executor = ContextThreadPoolExecutor(max_workers=1)
        loop.set_default_executor(executor)
        var.set("task value")
        return await asyncio.wait_for(loop.run_in_executor(None, var.get), WAIT)

    assert asyncio.run(main()) == "task value"


def test_concurrent_submitters_each_see_their_own(pool: ContextThreadPoolExecutor) -> None:
    """Many threads submitting at once each get their own values back."""
    count = 6
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def submitter(i: int) -> None:
        var.set(f"submitter {i}")
        barrier.wait(WAIT)
        results[i] = pool.submit(var.get).result(timeout=WAIT)

    threads = [
        threading.Thread(target=fresh, args=(lambda i=i: submitter(i),)) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert results == [f"submitter {i}" for i in range(count)]


def test_a_pool_below_its_size_starts_a_worker_when_none_is_idle() -> None:
    """A task submitted while every worker is busy gets a new thread, up to ``max_workers``."""
    together = threading.Barrier(4)
    with ContextThreadPoolExecutor(max_workers=3) as executor:
        futures = [executor.submit(together.wait, WAIT) for _ in range(3)]
        together.wait(WAIT)
        for future in futures:
            future.result(WAIT)


def test_a_full_pool_starts_no_more_threads_and_runs_every_task() -> None:
    """Once it has ``max_workers`` threads, a busy pool starts none, and queued tasks all run,
    each in its own submitter's context."""
    gate = threading.Event()
    with ContextThreadPoolExecutor(max_workers=2) as executor:
        started = threading.Barrier(3)
        blockers = [
            executor.submit(lambda: (started.wait(WAIT), gate.wait(WAIT))) for _ in range(2)
        ]
        started.wait(WAIT)
        before = set(threading.enumerate())
        futures = []
        for i in range(50):
            var.set(f"task {i}")
            futures.append(executor.submit(lambda: (var.get(), threading.current_thread())))
        assert set(threading.enumerate()) <= before  # no thread started
        gate.set()
        for blocker in blockers:
            blocker.result(WAIT)
        results = [f.result(WAIT) for f in futures]
    assert [value for value, _ in results] == [f"task {i}" for i in range(50)]
    assert {thread for _, thread in results} <= before


def _kept_per_queued_task(pool: ThreadPoolExecutor, *args: Any, **kwargs: Any) -> float:
    """Return how many GC objects each task queued behind a busy worker keeps allocated."""
    gate = threading.Event()
    running = threading.Event()

    def block() -> None:
        running.set()
        gate.wait(WAIT)

    blocker = pool.submit(block)
    assert running.wait(WAIT)
    kept = [pool.submit(str, *args, **kwargs) for _ in range(10)]  # caches warm
    count = 1000
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        for _ in range(count):
            kept.append(pool.submit(str, *args, **kwargs))
        after = gc.get_count()[0]
    finally:
        gc.enable()
        gate.set()
    blocker.result(WAIT)
    return (after - before) / count


@pytest.mark.skipif(sys.implementation.name != "cpython", reason="CPython's GC counts")
@pytest.mark.parametrize(
    ("args", "kwargs", "more"),
    [((), {}, 0), ((b"x", "ascii"), {}, 0), ((b"x",), {"encoding": "ascii"}, 1)],
)
def test_a_queued_task_keeps_no_more_objects_than_the_stdlibs(
    args: tuple[Any, ...], kwargs: dict[str, Any], more: int
) -> None:
    """A task waiting in our queue, its copy of the context included, keeps no more objects
    of the cyclic GC's allocated than one in the stdlib's, unless it has keyword arguments
    (then one more: the copy). In a burst, each object more per queued task brings CPython's
    next full collection closer (docs/explanation/performance.md)."""
    with ThreadPoolExecutor(1) as stdlib, ContextThreadPoolExecutor(1) as ours:
        theirs = _kept_per_queued_task(stdlib, *args, **kwargs)
        assert _kept_per_queued_task(ours, *args, **kwargs) <= theirs + more + 0.01


def test_shutdown_cancel_futures_as_in_stdlib() -> None:
    """shutdown(cancel_futures=True) cancels queued work, as with the stdlib."""
    release = threading.Event()
    executor = ContextThreadPoolExecutor(1)
    running = executor.submit(release.wait, WAIT)
    queued = executor.submit(lambda: None)
    executor.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert running.result(timeout=WAIT) is True
    assert queued.cancelled()
    executor.shutdown(wait=True)


# The initializer -----------------------------------------------------------


def test_initializer_runs_in_the_construction_context() -> None:
    """The initializer sees the values current at construction, not the submitter's."""
    seen: list[str] = []

    def body() -> None:
        var.set("at construction")
        executor = ContextThreadPoolExecutor(1, initializer=lambda: seen.append(var.get("unset")))
        var.set("at submit")
        try:
            assert executor.submit(var.get).result(timeout=WAIT) == "at submit"
        finally:
            executor.shutdown(wait=True)

    fresh(body)
    assert seen == ["at construction"]


def test_initializer_runs_once_per_worker_each_in_a_fresh_copy() -> None:
    """Each worker runs the initializer once, in its own copy: no worker sees another's writes."""
    seen: list[str] = []
    lock = threading.Lock()

    def initializer(tag: str) -> None:
        with lock:
            seen.append(var.get("unset"))
        var.set(f"{tag} written by initializer")

    barrier = threading.Barrier(2)

    def body() -> None:
        var.set("at construction")
        with ContextThreadPoolExecutor(2, initializer=initializer, initargs=("w",)) as executor:
            # Two tasks that wait for each other need two workers.
            futures = [executor.submit(barrier.wait, WAIT) for _ in range(2)]
            for future in futures:
                future.result(timeout=WAIT)
        assert var.get() == "at construction"

    fresh(body)
    assert seen == ["at construction", "at construction"]


def test_tasks_do_not_see_initializer_contextvar_writes() -> None:
    """Tasks run in their submitters' contexts: never see the initializer's ContextVar writes."""

    def body() -> None:
        with ContextThreadPoolExecutor(1, initializer=var.set, initargs=("initializer",)) as ex:
            assert ex.submit(var.get, "unset").result(timeout=WAIT) == "unset"
            var.set("submitter")
            assert ex.submit(var.get, "unset").result(timeout=WAIT) == "submitter"

    fresh(body)


def test_tasks_see_initializer_thread_local_state() -> None:
    """threading.local state set by the initializer is seen by tasks on that worker."""
    local = threading.local()

    def initializer() -> None:
        local.connection = f"connection of {threading.current_thread().name}"

    with ContextThreadPoolExecutor(1, initializer=initializer) as executor:
        got = executor.submit(lambda: local.connection).result(timeout=WAIT)
        name = executor.submit(lambda: threading.current_thread().name).result(timeout=WAIT)
    assert got == f"connection of {name}"


def test_failing_initializer_breaks_the_pool_as_in_stdlib(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing initializer gives BrokenThreadPool to pending and later submits, as in stdlib."""

    def initializer() -> None:
        raise ValueError("init failed")

    with caplog.at_level(logging.CRITICAL, logger="concurrent.futures"):
        executor = ContextThreadPoolExecutor(1, initializer=initializer)
        try:
            future = executor.submit(lambda: None)
            with pytest.raises(BrokenThreadPool):
                future.result(timeout=WAIT)
            with pytest.raises(BrokenThreadPool):
                executor.submit(lambda: None)
        finally:
            executor.shutdown(wait=True)
    assert issubclass(BrokenThreadPool, BrokenExecutor)
    assert "Exception in initializer" in caplog.text


def test_non_callable_initializer_raises_stdlib_type_error() -> None:
    """A non-callable initializer raises the stdlib's TypeError at construction."""
    with pytest.raises(TypeError) as stdlib_error:
        ThreadPoolExecutor(initializer=5)  # type: ignore[call-overload]
    with pytest.raises(TypeError) as our_error:
        ContextThreadPoolExecutor(initializer=5)  # type: ignore[arg-type]
    assert str(our_error.value) == str(stdlib_error.value)
