"""Property tests: every mechanism carries exactly the capture-time context, and nothing leaks."""

from __future__ import annotations

import contextvars
import functools
import threading
from typing import Any, Callable, Iterator

import pytest
from bounds import LONG_WAIT, WAIT
from hypothesis import given
from hypothesis import strategies as st
from spawning import launch, run_tree
from strategies import (
    MECHANISMS,
    Assignment,
    Snapshot,
    applied,
    apply,
    assignments,
    count_spawns,
    snapshot,
    spawn_trees,
)

from contextthreads import ContextThread, ContextThreadPoolExecutor, ContextTimer, bind


def in_fresh_context(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in an empty Context, so examples never see each other's values."""
    return contextvars.Context().run(fn)


@pytest.fixture(scope="module")
def pool() -> Iterator[ContextThreadPoolExecutor]:
    """A pool shared by all examples of this module: its workers outlive tasks, as in real use."""
    executor = ContextThreadPoolExecutor(max_workers=32)
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture(scope="module")
def one_worker() -> Iterator[ContextThreadPoolExecutor]:
    """A one-worker pool shared by the examples: every task runs on the same thread."""
    executor = ContextThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


class Probe:
    """A child body that waits for ``go``, records what it sees, then writes ``writes``.

    Waiting lets the parent change its own values after the launch and before
    the child reads, so "set after launch" is checked deterministically.
    """

    def __init__(self, writes: Assignment) -> None:
        self.go = threading.Event()
        self.writes = writes
        self.seen: Snapshot | None = None
        self.after_writes: Snapshot | None = None

    def __call__(self, *_items: object) -> Snapshot:
        assert self.go.wait(WAIT), "parent never released the child"
        self.seen = snapshot()
        apply(self.writes)
        self.after_writes = snapshot()
        return self.seen


def _wait_thread(thread: threading.Thread) -> None:
    thread.join(WAIT)
    assert not thread.is_alive()


@given(assignments(), assignments(), assignments(), assignments())
def test_thread_sees_values_at_start(
    before: Assignment, after_init: Assignment, after_start: Assignment, writes: Assignment
) -> None:
    """ContextThread sees values set before and after construction up to start(), not after."""

    def body() -> None:
        apply(before)
        probe = Probe(writes)
        thread = ContextThread(target=probe)
        apply(after_init)
        expected = snapshot()
        thread.start()
        apply(after_start)
        mine = snapshot()
        probe.go.set()
        _wait_thread(thread)
        assert probe.seen == expected
        assert probe.after_writes == applied(expected, writes)
        assert snapshot() == mine

    in_fresh_context(body)


@given(assignments(), assignments(), assignments(), assignments())
def test_timer_sees_values_at_start(
    before: Assignment, after_init: Assignment, after_start: Assignment, writes: Assignment
) -> None:
    """ContextTimer's function sees values current at start(), set before or after construction."""

    def body() -> None:
        apply(before)
        probe = Probe(writes)
        timer = ContextTimer(0, probe)
        apply(after_init)
        expected = snapshot()
        timer.start()
        apply(after_start)
        mine = snapshot()
        probe.go.set()
        _wait_thread(timer)
        assert probe.seen == expected
        assert probe.after_writes == applied(expected, writes)
        assert snapshot() == mine

    in_fresh_context(body)


@given(assignments(), assignments(), assignments())
def test_submit_sees_values_at_submit(
    pool: ContextThreadPoolExecutor,
    before: Assignment,
    after_submit: Assignment,
    writes: Assignment,
) -> None:
    """A submitted task sees the values current at submit(), not later ones, and leaks nothing."""

    def body() -> None:
        apply(before)
        expected = snapshot()
        probe = Probe(writes)
        future = pool.submit(probe)
        apply(after_submit)
        mine = snapshot()
        probe.go.set()
        assert future.result(timeout=WAIT) == expected
        assert probe.after_writes == applied(expected, writes)
        assert snapshot() == mine

    in_fresh_context(body)


@given(assignments(), assignments(), st.lists(assignments(), min_size=1, max_size=4))
def test_map_sees_values_at_map(
    pool: ContextThreadPoolExecutor,
    before: Assignment,
    after_map: Assignment,
    writes: list[Assignment],
) -> None:
    """Every map() item sees the values current at map() and none of the other items' writes."""

    def body() -> None:
        apply(before)
        expected = snapshot()
        probes = [Probe(w) for w in writes]
        results = pool.map(lambda probe: probe(), probes, timeout=LONG_WAIT)
        apply(after_map)
        mine = snapshot()
        for probe in probes:
            probe.go.set()
        assert list(results) == [expected] * len(probes)
        for probe, w in zip(probes, writes):
            assert probe.after_writes == applied(expected, w)
        assert snapshot() == mine

    in_fresh_context(body)


@given(assignments(), assignments(), st.lists(assignments(), min_size=1, max_size=3))
def test_bind_sees_values_at_bind(
    before: Assignment, after_bind: Assignment, writes: list[Assignment]
) -> None:
    """Every call of a bound callable sees the values at bind(), leaking nothing."""

    def body() -> None:
        apply(before)
        expected = snapshot()
        probe = Probe({})
        bound = bind(probe)
        apply(after_bind)
        mine = snapshot()
        probe.go.set()
        for w in writes:
            probe.writes = w
            assert bound() == expected
            assert probe.after_writes == applied(expected, w)
        assert snapshot() == mine

    in_fresh_context(body)


@given(st.lists(st.tuples(assignments(), assignments()), min_size=1, max_size=6))
def test_one_worker_pool_tasks_never_see_earlier_tasks(
    one_worker: ContextThreadPoolExecutor, steps: list[tuple[Assignment, Assignment]]
) -> None:
    """On a one-worker pool each task sees only its submitter's values, never an earlier task's."""

    def body() -> None:
        futures = []
        for before, writes in steps:
            apply(before)
            expected = snapshot()
            probe = Probe(writes)
            probe.go.set()
            futures.append((expected, one_worker.submit(probe)))
        for expected, future in futures:
            assert future.result(timeout=WAIT) == expected

    in_fresh_context(body)


@given(assignments(), st.lists(assignments(), min_size=1, max_size=6))
def test_one_worker_pool_map_items_never_see_earlier_items(
    one_worker: ContextThreadPoolExecutor, before: Assignment, writes: list[Assignment]
) -> None:
    """On a one-worker pool every map() item starts from the map()-time values."""

    def body() -> None:
        apply(before)
        expected = snapshot()
        probes = [Probe(w) for w in writes]
        for probe in probes:
            probe.go.set()
        results = list(one_worker.map(lambda probe: probe(), probes, timeout=LONG_WAIT))
        assert results == [expected] * len(probes)

    in_fresh_context(body)


@given(spawn_trees())
def test_nested_spawn_trees(pool: ContextThreadPoolExecutor, tree: Any) -> None:
    """Nested spawns through every mechanism see their parent's values and leak nothing upward."""
    assert count_spawns(tree) < 32  # pool has a worker for every blocked parent
    in_fresh_context(lambda: run_tree(tree, pool))


@pytest.mark.parametrize("mechanism", MECHANISMS)
@given(st.lists(assignments(min_size=1), min_size=2, max_size=5))
def test_concurrent_spawners_each_see_their_own(
    pool: ContextThreadPoolExecutor, mechanism: str, per_thread: list[Assignment]
) -> None:
    """Threads spawning at the same moment each hand their own values to their own children."""
    barrier = threading.Barrier(len(per_thread))
    outcomes: list[BaseException | None] = [None] * len(per_thread)

    def spawner(index: int, assignment: Assignment) -> None:
        try:
            apply(assignment)
            expected = snapshot()
            barrier.wait(WAIT)
            seen = launch(mechanism, snapshot, pool).wait()
            assert seen == expected
            assert snapshot() == expected
        except BaseException as error:
            outcomes[index] = error

    threads = [
        threading.Thread(target=in_fresh_context, args=(lambda i=i, a=a: spawner(i, a),))
        for i, a in enumerate(per_thread)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        _wait_thread(thread)
    for outcome in outcomes:
        if outcome is not None:
            raise outcome


@pytest.mark.parametrize("mechanism", MECHANISMS)
@given(assignments(), st.lists(assignments(min_size=1), min_size=2, max_size=5))
def test_concurrent_siblings_never_see_each_other(
    pool: ContextThreadPoolExecutor, mechanism: str, base: Assignment, writes: list[Assignment]
) -> None:
    """Children of one parent, running together, never see each other's writes."""
    barrier = threading.Barrier(len(writes))

    def child(w: Assignment, expected: Snapshot) -> Snapshot:
        apply(w)
        barrier.wait(WAIT)  # every sibling has written before any reads back
        seen = snapshot()
        assert seen == applied(expected, w)
        return seen

    def body() -> None:
        apply(base)
        expected = snapshot()
        handles = [launch(mechanism, functools.partial(child, w, expected), pool) for w in writes]
        for handle in handles:
            handle.wait()
        assert snapshot() == expected

    in_fresh_context(body)


@pytest.mark.parametrize("kind", ["thread", "timer"])
@given(assignments(), assignments(), assignments())
def test_explicit_context_is_used_as_is(
    kind: str, given_values: Assignment, caller_values: Assignment, writes: Assignment
) -> None:
    """With context=ctx the child sees ctx's values, not the caller's, and writes into ctx."""
    ctx = contextvars.Context()
    ctx.run(apply, given_values)
    expected = ctx.run(snapshot)

    def body() -> None:
        apply(caller_values)
        mine = snapshot()
        probe = Probe(writes)
        probe.go.set()
        thread = (
            ContextThread(target=probe, context=ctx)
            if kind == "thread"
            else ContextTimer(0, probe, context=ctx)
        )
        thread.start()
        _wait_thread(thread)
        assert probe.seen == expected
        assert ctx.run(snapshot) == applied(expected, writes)
        assert snapshot() == mine

    in_fresh_context(body)
