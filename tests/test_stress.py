"""Stress from many threads at once: install(), the pools and bind() stay correct without the GIL.

Each test runs on every interpreter; on a free-threaded build its threads run
in parallel, elsewhere they switch every few instructions (``racing.py``).
Every test is bounded in rounds and in time, and checks that no work is lost
or run twice, that every piece of work sees exactly its own values, and that
nothing is left patched.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

import pytest
import stdlib_state
from bounds import WAIT
from hypothesis import given
from hypothesis import strategies as st
from racing import run_together
from strategies import values

from contextthreads import (
    ContextThread,
    ContextThreadPoolExecutor,
    bind,
    install,
    installed,
    is_installed,
    uninstall,
)
from contextthreads import _install as install_module
from contextthreads._install import threads_inherit_context

var: contextvars.ContextVar[Any] = contextvars.ContextVar("test_stress_var")

ORIGINALS = stdlib_state.snapshot()
WORKERS = 3


def read_in(thread_class: type[threading.Thread]) -> Any:
    """Start a ``thread_class`` thread here; return what it saw in ``var`` (None: unset)."""
    box: list[Any] = []
    thread = thread_class(target=lambda: box.append(var.get(None)))
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    return box[0]


Pool = TypeVar("Pool", bound=ThreadPoolExecutor)


def warmed(pool: Pool) -> Pool:
    """Start all of ``pool``'s workers now, in an empty context, and return it."""
    barrier = threading.Barrier(WORKERS)
    for future in [pool.submit(barrier.wait, WAIT) for _ in range(WORKERS)]:
        future.result(timeout=WAIT)
    return pool


@pytest.fixture
def pools() -> Iterator[tuple[ThreadPoolExecutor, ContextThreadPoolExecutor]]:
    """A plain pool and one of ours, each with all its workers started in an empty context."""
    plain, ours = contextvars.Context().run(
        lambda: (warmed(ThreadPoolExecutor(WORKERS)), warmed(ContextThreadPoolExecutor(WORKERS)))
    )
    try:
        yield plain, ours
    finally:
        plain.shutdown(wait=True)
        ours.shutdown(wait=True)


def switcher(
    n: int,
    rounds: int,
    every: int,
    problems: list[str],
    in_block: Callable[[int, int], None] = lambda n, r: None,
) -> Callable[[], None]:
    """Return the body of switching thread ``n``: ``rounds`` rounds, one in ``every`` an
    install()/uninstall() pair, the others an installed() block that checks the patch is in
    place, then calls ``in_block(n, r)``. What goes wrong is appended to ``problems``."""

    def body() -> None:
        for r in range(rounds):
            if (n + r) % every == 1:
                install()
                uninstall()
                continue
            with installed():
                if not is_installed():
                    problems.append("is_installed() is False inside an installed() block")
                in_block(n, r)

    return body


def assert_nothing_patched() -> None:
    """Assert that, once uninstalled, no block is counted and nothing is applied, left over
    or patched."""
    uninstall()
    assert not is_installed()
    assert install_module._blocks == 0
    assert install_module._applied == []
    assert install_module._leftovers == {}
    assert stdlib_state.differences(ORIGINALS, stdlib_state.snapshot()) == []


def test_install_switched_from_many_threads_while_others_start_threads_and_submit(
    pools: tuple[ThreadPoolExecutor, ContextThreadPoolExecutor],
) -> None:
    """install()/uninstall() pairs and installed() blocks from six threads, while four more
    start threads and submit: inside a block the patch is always in place (a plain thread and
    a plain pool's task see the block's value); our classes always carry the starter's value;
    plain ones carry it or nothing, never another thread's; afterwards nothing is patched."""
    plain, ours = pools
    rounds, switchers, starters = 200, 6, 4
    problems: list[str] = []  # list.append is atomic, with or without the GIL
    checked: list[int] = []

    def expect(what: str, seen: Any, tag: str, *, or_unset: bool = False) -> None:
        checked.append(1)
        if seen != tag and not (or_unset and seen is None):
            problems.append(f"{what} saw {seen!r} where {tag!r} was set")

    def in_block(n: int, r: int) -> None:
        tag = f"block {n}.{r}"
        var.set(tag)
        expect("a plain thread started in a block", read_in(threading.Thread), tag)
        seen = plain.submit(var.get, None).result(timeout=WAIT)
        expect("a plain pool's task submitted in a block", seen, tag)

    def starter(n: int) -> Callable[[], None]:
        def body() -> None:
            for r in range(rounds):
                tag = f"starter {n}.{r}"
                var.set(tag)
                expect("a ContextThread", read_in(ContextThread), tag)
                expect("a plain thread", read_in(threading.Thread), tag, or_unset=True)
                expect("our pool's task", ours.submit(var.get, None).result(timeout=WAIT), tag)
                seen = plain.submit(var.get, None).result(timeout=WAIT)
                expect("a plain pool's task", seen, tag, or_unset=True)
                expect("a bind()-wrapped call", bind(var.get)(None), tag)

        return body

    switching = [switcher(n, rounds, 2, problems, in_block) for n in range(switchers)]
    run_together(switching + [starter(n) for n in range(starters)])
    assert problems == []
    assert len(checked) == starters * rounds * 5 + switchers * (rounds // 2) * 2  # none lost
    assert_nothing_patched()
    assert threads_inherit_context() is bool(getattr(sys.flags, "thread_inherit_context", 0))


#: What each submitter sets before each of its submits: one list of values per submitter.
PLANS = st.lists(st.lists(values(), min_size=1, max_size=12), min_size=2, max_size=6)


@pytest.mark.parametrize("how", ["ours: submit", "ours: map", "plain pool under install()"])
@given(plans=PLANS)
def test_many_submitters_into_one_pool_each_task_sees_its_own(
    how: str, plans: list[list[Any]]
) -> None:
    """Submitters released at once into one pool, each setting its own values: every task
    runs once, sees the value set at its submit() (the map()-time value for map()), keeps
    its writes to itself; the pool never has more than max_workers threads."""
    ran: list[tuple[int, int]] = []
    results: dict[int, list[Any]] = {}

    def task(n: int, index: int) -> Any:
        ran.append((n, index))
        seen = var.get(None)
        var.set(("written by a task", n, index))
        return seen

    def submitter(pool: ThreadPoolExecutor, n: int, plan: list[Any]) -> Callable[[], None]:
        def body() -> None:
            if how == "ours: map":
                var.set((n, plan))
                results[n] = list(pool.map(task, [n] * len(plan), range(len(plan)), timeout=WAIT))
            else:
                futures = []
                for index, value in enumerate(plan):
                    var.set((n, index, value))
                    futures.append(pool.submit(task, n, index))
                results[n] = [future.result(timeout=WAIT) for future in futures]
            if var.get()[0] != n:
                raise AssertionError(f"a task's write reached submitter {n}")

        return body

    def race() -> None:
        make = ThreadPoolExecutor if how.startswith("plain") else ContextThreadPoolExecutor
        with make(WORKERS) as pool:
            run_together([submitter(pool, n, plan) for n, plan in enumerate(plans)])
            assert len(pool._threads) <= WORKERS

    if how.startswith("plain"):
        with installed():
            contextvars.Context().run(race)
    else:
        contextvars.Context().run(race)
    assert sorted(ran) == sorted((n, i) for n, plan in enumerate(plans) for i in range(len(plan)))
    # The very objects each submitter set, compared by identity: a copy holds them.
    for n, plan in enumerate(plans):
        if how == "ours: map":
            assert all(seen[0] == n and seen[1] is plan for seen in results[n]), results[n]
        else:
            assert [seen[:2] for seen in results[n]] == [(n, i) for i in range(len(plan))]
            assert all(seen[2] is value for seen, value in zip(results[n], plan)), results[n]


def test_bind_from_many_threads() -> None:
    """Eight threads call one bound callable over and over at once, and the bound callables
    of each other: every call sees its binder's value and its own writes, never another
    call's; no call is lost."""
    calls, threads = 10_000, 8
    seen_by_call: list[Any] = []

    def probe() -> Any:
        seen = var.get(None)
        mine = object()
        var.set(mine)
        if var.get() is not mine:
            raise AssertionError("another call's write reached this one")
        seen_by_call.append(seen)
        return seen

    def bound_to(value: str) -> Callable[[], Any]:
        var.set(value)
        return bind(probe)

    shared = contextvars.Context().run(bound_to, "shared")
    own: dict[int, Callable[[], Any]] = {}
    all_bound = threading.Barrier(threads)

    def caller(n: int) -> Callable[[], None]:
        def body() -> None:
            own[n] = bound_to(f"binder {n}")
            all_bound.wait(WAIT)
            for call in range(calls):
                if shared() != "shared":
                    raise AssertionError("the shared bound callable lost its value")
                if call % 500 == 0:
                    binder = (call // 500) % threads  # at about the same time as the others
                    if own[binder]() != f"binder {binder}":
                        raise AssertionError(f"binder {binder}'s callable lost its value")
            if var.get() != f"binder {n}":
                raise AssertionError("a bound call's write reached its caller")

        return body

    run_together([caller(n) for n in range(threads)])
    assert len(seen_by_call) == threads * (calls + calls // 500)


def test_install_switched_in_tight_loops_from_many_threads() -> None:
    """install()/uninstall() pairs and installed() blocks from eight threads with nothing in
    between, where the switching races hardest: a block always finds the patch in place, and
    afterwards no block is counted, nothing is applied, left over or patched."""
    rounds, switchers = 2000, 8
    problems: list[str] = []

    run_together([switcher(n, rounds, 3, problems) for n in range(switchers)])
    assert problems == []
    assert_nothing_patched()
