"""contextthreads.testing's checker, applied to every way this package moves work elsewhere.

Each mechanism is wrapped in a ``spawn(fn)`` that runs ``fn`` through it and
waits for the result, and must pass ``check_context_isolation``: the spawned
code sees the spawner's values at spawn time, its writes reach no one, and
concurrent spawners each see their own.
"""

from __future__ import annotations

import importlib.util
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

import pytest
from bounds import LONG_WAIT, WAIT

from contextthreads import (
    ContextThread,
    ContextThreadPoolExecutor,
    ContextTimer,
    bind,
)
from contextthreads.testing import (
    VARIABLE_POOL,
    ContextIsolationError,
    IsolationScenario,
    SpawnerPlan,
    SpawnStep,
    assert_context_isolation,
    check_context_isolation,
)

T = TypeVar("T")

HAVE_INSTALL = importlib.util.find_spec("contextthreads._install") is not None
HAVE_FLUSTER = (
    importlib.util.find_spec("contextthreads.fluster") is not None
    and importlib.util.find_spec("cloudpickle") is not None
)


def run_on(make_thread: Callable[[Callable[[], None]], threading.Thread]) -> Callable[..., Any]:
    """Return a spawn function that runs ``fn`` on a thread made by ``make_thread``."""

    def spawn(fn: Callable[[], T]) -> T:
        box: list[T] = []
        thread = make_thread(lambda: box.append(fn()))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive()
        return box[0]

    return spawn


def call(fn: Callable[[], T]) -> T:
    """Call ``fn``: the function ``map()`` applies to each item."""
    return fn()


@pytest.fixture
def pool() -> Iterator[ContextThreadPoolExecutor]:
    """Yield a two-worker ContextThreadPoolExecutor, shut down afterwards."""
    with ContextThreadPoolExecutor(2) as executor:
        yield executor


def test_context_thread_isolates() -> None:
    """ContextThread: the target runs in a copy of the starter's context."""
    check_context_isolation(run_on(lambda target: ContextThread(target=target)))


def test_context_thread_subclass_overriding_run_isolates() -> None:
    """A ContextThread subclass that overrides run() runs it in the starter's context."""

    class Worker(ContextThread):
        def __init__(self, target: Callable[[], None]) -> None:
            super().__init__()
            self.work = target

        def run(self) -> None:
            self.work()

    check_context_isolation(run_on(Worker))


def test_context_timer_isolates() -> None:
    """ContextTimer: the function runs in a copy of the context of the caller of start()."""
    check_context_isolation(run_on(lambda target: ContextTimer(0, target)))


def test_executor_submit_isolates(pool: ContextThreadPoolExecutor) -> None:
    """ContextThreadPoolExecutor.submit() runs each task in a copy of the submitter's context."""
    check_context_isolation(lambda fn: pool.submit(fn).result(timeout=WAIT))


def test_executor_map_isolates(pool: ContextThreadPoolExecutor) -> None:
    """ContextThreadPoolExecutor.map() runs each item in a copy of the context at map()."""

    def spawn(fn: Callable[[], T]) -> T:
        results: list[T] = list(pool.map(call, [fn], timeout=WAIT))
        return results[0]

    check_context_isolation(spawn)


def test_bind_called_in_place_isolates() -> None:
    """bind(fn)() runs fn in a copy of the context at bind() time, in the caller's thread."""
    check_context_isolation(lambda fn: bind(fn)())


def test_bind_carried_to_a_plain_thread_isolates() -> None:
    """A callable bound in the spawner and run on a plain Thread sees the spawner's values."""
    on_plain = run_on(lambda target: threading.Thread(target=target))
    check_context_isolation(lambda fn: on_plain(bind(fn)))


@pytest.mark.skipif(not HAVE_INSTALL, reason="contextthreads._install is not there yet")
class TestInstalled:
    """After install(), the stdlib's own Thread, Timer and ThreadPoolExecutor pass the checker."""

    @pytest.fixture(autouse=True)
    def _installed(self) -> Iterator[None]:
        from contextthreads._install import installed

        with installed():
            yield

    def test_plain_thread_isolates(self) -> None:
        """threading.Thread under install() runs in a copy of its starter's context."""
        check_context_isolation(run_on(lambda target: threading.Thread(target=target)))

    def test_plain_timer_isolates(self) -> None:
        """threading.Timer under install() runs in a copy of its starter's context."""
        check_context_isolation(run_on(lambda target: threading.Timer(0, target)))

    def test_plain_pool_submit_isolates(self) -> None:
        """ThreadPoolExecutor.submit() under install() runs each task in its own copy."""
        with ThreadPoolExecutor(2) as executor:
            check_context_isolation(lambda fn: executor.submit(fn).result(timeout=WAIT))

    def test_plain_pool_map_isolates(self) -> None:
        """ThreadPoolExecutor.map() under install() runs each item in its own copy."""
        with ThreadPoolExecutor(2) as executor:

            def spawn(fn: Callable[[], T]) -> T:
                results: list[T] = list(executor.map(call, [fn], timeout=WAIT))
                return results[0]

            check_context_isolation(spawn)


@pytest.mark.skipif(not HAVE_INSTALL, reason="contextthreads._install is not there yet")
def test_install_only_carries_just_the_chosen_variables() -> None:
    """install(only=[var]) passes for that var; a spawned thread sees the others unset."""
    from contextthreads._install import installed

    chosen = VARIABLE_POOL[:1]
    on_plain = run_on(lambda target: threading.Thread(target=target))
    with installed(only=chosen):
        check_context_isolation(on_plain, variables=chosen)
        both = IsolationScenario(VARIABLE_POOL, (SpawnerPlan((SpawnStep((0, 1), ()),)),))
        with pytest.raises(ContextIsolationError) as info:
            assert_context_isolation(on_plain, both)
    assert "spawned code saw tenant unset, but spawner A had tenant='A1'" in str(info.value)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_FLUSTER, reason="contextthreads.fluster or cloudpickle is missing")
def test_fluster_worker_pool_isolates_its_context_vars() -> None:
    """A Fluster WorkerPool carries its context_vars to worker processes, one copy per task.

    The probes and the pool's variables travel by module-level name; the
    values the checker makes are strings, so they pickle. A pool without
    ``context_vars`` carries nothing, and the checker says so.
    """
    from contextthreads.fluster import (
        LocalCluster,
        WorkerPool,
        WorkerPoolConfig,
        fluster_ctx_scope,
    )

    config = WorkerPoolConfig(num_workers=2, context_vars=VARIABLE_POOL)
    with LocalCluster() as cluster, fluster_ctx_scope(cluster.context()):
        with WorkerPool(cluster.client(), config, timeout=LONG_WAIT) as workers:
            check_context_isolation(
                lambda fn: workers.submit(fn).result(timeout=LONG_WAIT),
                max_examples=10,
                timeout=LONG_WAIT,
            )
        bare = WorkerPool(cluster.client(), WorkerPoolConfig(num_workers=1), timeout=LONG_WAIT)
        with bare, pytest.raises(ContextIsolationError) as info:
            check_context_isolation(
                lambda fn: bare.submit(fn).result(timeout=LONG_WAIT),
                max_examples=1,
                timeout=LONG_WAIT,
            )
    assert "spawned code saw request_id unset, but spawner A had request_id='A1'" in str(info.value)
