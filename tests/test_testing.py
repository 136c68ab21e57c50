"""contextthreads.testing: the strategies, and the checker passing, failing and explaining."""

from __future__ import annotations

import contextvars
import itertools
import multiprocessing
import pickle
import subprocess
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Callable, Iterator, TypeVar

import pytest
from bounds import LONG_WAIT, WAIT
from hypothesis import given
from hypothesis import strategies as st

from contextthreads import ContextThreadPoolExecutor, bind
from contextthreads._install import threads_inherit_context
from contextthreads.testing import (
    VARIABLE_POOL,
    ContextIsolationError,
    IsolationScenario,
    SpawnerPlan,
    SpawnStep,
    assert_context_isolation,
    check_context_isolation,
    context_assignments,
    context_vars,
    isolation_scenarios,
)
from contextthreads.testing._checker import _Probe

T = TypeVar("T")

request_id, tenant = VARIABLE_POOL[0], VARIABLE_POOL[1]
module_level_var: contextvars.ContextVar[Any] = contextvars.ContextVar("module_level_var")


def one_spawner(*steps: SpawnStep) -> IsolationScenario:
    """Return a scenario with a single spawner making ``steps``."""
    return IsolationScenario(VARIABLE_POOL, (SpawnerPlan(steps),))


def in_plain_thread(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a plain ``threading.Thread`` and return its result."""
    box: list[T] = []
    thread = threading.Thread(target=lambda: box.append(fn()))
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    return box[0]


class SharedContextExecutor(ThreadPoolExecutor):
    """A broken pool: every task runs in the one Context captured at construction."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers)
        self._shared = contextvars.copy_context()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return super().submit(self._shared.run, fn, *args, **kwargs)


class ReplayingExecutor(ThreadPoolExecutor):
    """A subtler broken pool: it copies the submitter's values into one shared Context.

    Tasks see the values current at submit time, so only the leak of their
    writes into later tasks (or two tasks entering the Context at once) shows.
    """

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers)
        self._shared = contextvars.Context()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        values = list(contextvars.copy_context().items())

        def replay() -> T:
            for var, value in values:
                var.set(value)
            return fn(*args, **kwargs)

        return super().submit(self._shared.run, replay)


@pytest.fixture
def good_pool() -> Iterator[ContextThreadPoolExecutor]:
    """Yield a two-worker ContextThreadPoolExecutor, shut down afterwards."""
    with ContextThreadPoolExecutor(2) as pool:
        yield pool


# --- strategies -------------------------------------------------------------


@given(context_vars())
def test_context_vars_draws_distinct_pool_variables(variables: tuple[Any, ...]) -> None:
    """context_vars() draws one or more distinct variables, all from VARIABLE_POOL."""
    assert 1 <= len(variables) <= len(VARIABLE_POOL)
    assert len(set(variables)) == len(variables)
    assert all(var in VARIABLE_POOL for var in variables)


@given(context_vars(min_size=0, max_size=2, variables=[module_level_var, request_id]))
def test_context_vars_respects_custom_pool_and_sizes(variables: tuple[Any, ...]) -> None:
    """context_vars(variables=..., max_size=...) draws only from the given variables."""
    assert len(variables) <= 2
    assert set(variables) <= {module_level_var, request_id}


@given(context_assignments(st.integers(), min_size=1, max_size=3))
def test_context_assignments_maps_pool_variables_to_drawn_values(
    assignment: dict[contextvars.ContextVar[Any], Any],
) -> None:
    """context_assignments() maps 1..max_size pool variables to values from the strategy."""
    assert 1 <= len(assignment) <= 3
    assert all(var in VARIABLE_POOL for var in assignment)
    assert all(isinstance(value, int) for value in assignment.values())


@given(context_assignments())
def test_default_assignment_values_pickle(assignment: dict[Any, Any]) -> None:
    """The default values pickle, so an assignment can be replayed in another process."""
    values = list(assignment.values())
    assert pickle.loads(pickle.dumps(values)) == values


@given(isolation_scenarios(max_spawners=2, max_spawns=2))
def test_isolation_scenarios_stay_within_bounds(scenario: IsolationScenario) -> None:
    """Scenarios have 1..max spawners and spawns, and index only their own variables."""
    assert 1 <= len(scenario.spawners) <= 2
    for plan in scenario.spawners:
        assert 1 <= len(plan.steps) <= 2
        for step in plan.steps:
            assert all(0 <= i < len(scenario.variables) for i in step.sets + step.writes)
    assert scenario.describe().count("spawner ") == len(scenario.spawners)


def test_bad_variables_are_refused_clearly() -> None:
    """Empty, repeated or non-ContextVar pools raise a clear error at strategy creation."""
    with pytest.raises(ValueError, match="at least one"):
        context_vars(variables=[])
    with pytest.raises(ValueError, match="repeat"):
        context_assignments(variables=[request_id, request_id])
    with pytest.raises(TypeError, match="ContextVar objects, not str"):
        isolation_scenarios(["request_id"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least 1"):
        isolation_scenarios(max_spawners=0)


def test_scenario_describe_tells_the_story() -> None:
    """describe() says what each spawner sets and which variables the spawned code writes."""
    scenario = one_spawner(SpawnStep(sets=(0, 1), writes=(1,)), SpawnStep(sets=(), writes=()))
    assert scenario.describe() == (
        "spawner A: set request_id='A1', tenant='A1'; "
        "spawn #1 (spawned code writes tenant); spawn #2"
    )


# --- the checker passes good mechanisms -------------------------------------


def test_checker_passes_context_pool(good_pool: ContextThreadPoolExecutor) -> None:
    """A ContextThreadPoolExecutor used as documented passes check_context_isolation()."""
    check_context_isolation(lambda fn: good_pool.submit(fn).result(timeout=WAIT))


def test_checker_accepts_user_variables(good_pool: ContextThreadPoolExecutor) -> None:
    """check_context_isolation(variables=...) checks the caller's own variables."""
    check_context_isolation(
        lambda fn: good_pool.submit(fn).result(timeout=WAIT),
        variables=[module_level_var],
        max_examples=5,
    )


@given(isolation_scenarios())
def test_assert_context_isolation_is_a_given_building_block(scenario: IsolationScenario) -> None:
    """assert_context_isolation() checks one drawn scenario inside the user's own @given test."""
    with ContextThreadPoolExecutor(2) as pool:
        assert_context_isolation(lambda fn: pool.submit(fn).result(timeout=WAIT), scenario)


def test_checker_ignores_the_callers_context(good_pool: ContextThreadPoolExecutor) -> None:
    """Values the test itself has set do not confuse the checker: spawners start empty."""
    token = request_id.set("set-by-the-test")
    try:
        check_context_isolation(
            lambda fn: good_pool.submit(fn).result(timeout=WAIT), max_examples=5
        )
        assert request_id.get() == "set-by-the-test"
    finally:
        request_id.reset(token)


def test_checker_names_values_from_outside() -> None:
    """A value the spawned code got from elsewhere (here the pool's creator) is called that."""
    token = request_id.set("set-by-the-test")
    try:
        pool = SharedContextExecutor(1)
    finally:
        request_id.reset(token)
    with pool, pytest.raises(ContextIsolationError) as info:
        assert_context_isolation(
            lambda fn: pool.submit(fn).result(timeout=WAIT), one_spawner(SpawnStep((), ()))
        )
    assert (
        "spawned code saw request_id='set-by-the-test' (a value the checker never set: it came "
        "from outside the spawner's context), but spawner A had request_id unset"
    ) in str(info.value)


# --- the checker fails bad ones, and says why -------------------------------


def test_checker_on_plain_thread_depends_on_inheritance() -> None:
    """A plain Thread fails (sees nothing) unless threads inherit context; then it passes.

    Under 3.14's thread_inherit_context=1 (or install()) a plain Thread copies
    its starter's context at start(), which is all three properties.
    """
    if threads_inherit_context():
        check_context_isolation(in_plain_thread)
        return
    with pytest.raises(ContextIsolationError) as info:
        check_context_isolation(in_plain_thread)
    assert (
        "spawned code saw request_id unset, but spawner A had request_id='A1' "
        "when it called spawn() (spawn #1): spawned code must see the values current "
        "at spawn time" in str(info.value)
    )


def test_checker_fails_plain_thread_pool_either_way() -> None:
    """A plain ThreadPoolExecutor fails with or without thread context inheritance.

    Without it the tasks see nothing; with it each worker keeps the context of
    the submitter that created it and runs every task right in it, so one
    task's writes reach the next.
    """
    with ThreadPoolExecutor(2) as pool, pytest.raises(ContextIsolationError) as info:
        check_context_isolation(lambda fn: pool.submit(fn).result(timeout=WAIT))
    if getattr(sys.flags, "thread_inherit_context", 0):
        expected = (
            "spawned code saw tenant='written-in-A1' (written inside the code spawner A "
            "spawned with spawn #1), but spawner A had tenant unset when it called spawn() "
            "(spawn #2): writes inside spawned code must never reach other spawns"
        )
    else:
        expected = "spawned code saw request_id unset, but spawner A had request_id='A1'"
    assert expected in str(info.value)


def test_checker_fails_shared_context_pool_subclass() -> None:
    """A pool subclass running every task in one Context captured at __init__ fails.

    The first thing the checker sees is the missing spawner's value; an
    AssertionError subclass, so pytest reports it as a test failure.
    """
    with SharedContextExecutor(2) as pool, pytest.raises(ContextIsolationError) as info:
        check_context_isolation(lambda fn: pool.submit(fn).result(timeout=WAIT))
    assert isinstance(info.value, AssertionError)
    assert "spawned code saw request_id unset, but spawner A had request_id='A1'" in str(info.value)


def test_checker_catches_writes_leaking_through_a_shared_context() -> None:
    """A pool that replays values into one shared Context leaks writes into the next task."""
    scenario = one_spawner(SpawnStep(sets=(0,), writes=(1,)), SpawnStep(sets=(), writes=()))
    with ReplayingExecutor(1) as pool, pytest.raises(ContextIsolationError) as info:
        assert_context_isolation(lambda fn: pool.submit(fn).result(timeout=WAIT), scenario)
    assert (
        "spawned code saw tenant='written-in-A1' (written inside the code spawner A "
        "spawned with spawn #1), but spawner A had tenant unset when it called spawn() "
        "(spawn #2): writes inside spawned code must never reach other spawns"
    ) in str(info.value)
    with ReplayingExecutor(2) as pool, pytest.raises(ContextIsolationError):
        check_context_isolation(lambda fn: pool.submit(fn).result(timeout=WAIT))


def test_checker_explains_one_context_entered_twice() -> None:
    """Two spawns entering one shared Context at once fail as 'cannot enter context', explained.

    The spawn function holds the shared Context in one spawner until the
    other has tried to enter it, so the collision happens on every run.
    """
    shared = contextvars.Context()
    entered, attempted = threading.Event(), threading.Event()
    lock = threading.Lock()
    calls: list[int] = []

    def spawn(fn: Callable[[], T]) -> T:
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if first:

            def hold() -> T:
                entered.set()
                attempted.wait(WAIT)
                return fn()

            return shared.run(hold)
        entered.wait(WAIT)
        try:
            return shared.run(fn)
        finally:
            attempted.set()

    scenario = IsolationScenario(VARIABLE_POOL, (SpawnerPlan((SpawnStep((), ()),)),) * 2)
    with pytest.raises(ContextIsolationError) as info:
        assert_context_isolation(spawn, scenario)
    message = str(info.value)
    assert "spawn() raised RuntimeError: cannot enter context" in message
    assert "while other spawners called spawn() at the same time" in message
    assert "shares a Context between spawns instead of copying it" in message
    assert isinstance(info.value.__cause__, RuntimeError)


def test_checker_catches_writes_leaking_back_to_the_spawner() -> None:
    """Running fn in the spawner's own context leaks its writes back, and the message says so."""
    with pytest.raises(ContextIsolationError) as info:
        check_context_isolation(lambda fn: fn())
    assert (
        "a write of tenant='written-in-A1' inside spawned code (written inside the code "
        "spawner A spawned with spawn #1) leaked back to spawner A (after spawn #1 returned "
        "it should still have had tenant unset)"
    ) in str(info.value)


def test_checker_catches_stale_context() -> None:
    """A spawn that reuses the context of the spawner's first spawn shows the stale value."""
    cached: dict[int, contextvars.Context] = {}

    def spawn(fn: Callable[[], T]) -> T:
        context = cached.setdefault(threading.get_ident(), contextvars.copy_context())
        return context.copy().run(fn)

    scenario = one_spawner(SpawnStep((0,), ()), SpawnStep((0,), ()))
    with pytest.raises(ContextIsolationError) as info:
        assert_context_isolation(spawn, scenario)
    assert (
        "spawned code saw request_id='A1' (the value spawner A set before its spawn #1), "
        "but spawner A had request_id='A2' when it called spawn() (spawn #2)"
    ) in str(info.value)


def test_checker_catches_values_from_another_spawner() -> None:
    """Concurrent spawners sharing one context are told apart by whose value was seen."""
    lock = threading.Lock()
    arrived = threading.Barrier(2)
    shared: list[contextvars.Context] = []

    def spawn(fn: Callable[[], T]) -> T:
        # Both spawners have set their values; then both use the first one's context.
        with lock:
            shared.append(contextvars.copy_context())
        arrived.wait(WAIT)
        with lock:
            context = shared[0].copy()
        return context.run(fn)

    scenario = IsolationScenario(VARIABLE_POOL, (SpawnerPlan((SpawnStep((0,), ()),)),) * 2)
    with pytest.raises(ContextIsolationError) as info:
        assert_context_isolation(spawn, scenario)
    message = str(info.value)
    assert "spawned code saw request_id='" in message
    assert "(the value spawner " in message
    assert "spawned code must see the values current at spawn time" in message


def test_checker_reports_spawn_not_waiting(good_pool: ContextThreadPoolExecutor) -> None:
    """A spawn function that returns the Future instead of its result breaks the contract."""
    with pytest.raises(ContextIsolationError) as info:
        assert_context_isolation(good_pool.submit, one_spawner(SpawnStep((), ())))
    assert "spawn(fn) must wait for fn and return what fn returned" in str(info.value)
    assert "did you forget .result()?" in str(info.value)


def test_checker_wait_is_bounded() -> None:
    """A spawn function that never returns fails after ``timeout`` instead of hanging."""
    release = threading.Event()

    def spawn(fn: Callable[[], T]) -> T:
        release.wait(WAIT)
        return fn()

    try:
        with pytest.raises(ContextIsolationError) as info:
            assert_context_isolation(spawn, one_spawner(SpawnStep((), ())), timeout=0.5)
    finally:
        release.set()
    assert "spawn() did not return within 0.5s (spawner A, spawn #1)" in str(info.value)


def test_checker_reports_failures_that_do_not_repeat() -> None:
    """A failure that does not happen again when replayed is still a ContextIsolationError.

    The spawn function fails once, on its first call after the checker's five
    fixed spawns, so hypothesis sees a flaky failure; the message keeps the
    explanation and says the mechanism is racy.
    """
    calls = itertools.count()

    def spawn(fn: Callable[[], T]) -> T:
        if next(calls) == 5:
            raise RuntimeError("lost the context, once")
        return bind(fn)()

    with pytest.raises(ContextIsolationError) as info:
        check_context_isolation(spawn, max_examples=20)
    assert "spawn() raised RuntimeError: lost the context, once" in str(info.value)
    assert "did not happen on every run: the mechanism is racy" in str(info.value)


def test_checker_reports_errors_raised_by_spawn() -> None:
    """An exception from spawn() fails the check and is chained as the cause."""

    def spawn(fn: Callable[[], T]) -> T:
        raise OSError("pool is closed")

    with pytest.raises(ContextIsolationError, match="spawn\\(\\) raised OSError: pool is closed"):
        assert_context_isolation(spawn, one_spawner(SpawnStep((), ())))


# --- probes cross process boundaries ----------------------------------------


def test_probe_pickles_by_variable_name() -> None:
    """A probe pickles with its module-level variables named, and unpickles to the same ones."""
    probe = _Probe((request_id, module_level_var), ((0, "written"),), "A1:0")
    clone = pickle.loads(pickle.dumps(probe))
    assert clone.variables == (request_id, module_level_var)
    assert clone.writes == ((0, "written"),)
    assert contextvars.Context().run(clone) == ("A1:0", ())


def test_probe_with_local_variable_refuses_to_pickle() -> None:
    """A ContextVar that is not a module global cannot travel; the error says so."""
    local: contextvars.ContextVar[Any] = contextvars.ContextVar("local_only")
    with pytest.raises(pickle.PicklingError, match="'local_only' is not a module-level global"):
        pickle.dumps(_Probe((local,), (), "A1:0"))


@pytest.mark.skipif(
    not hasattr(ProcessPoolExecutor, "_adjust_process_count"),
    reason="this ProcessPoolExecutor cannot start spawned workers (Debian's PyPy 7.3.11)",
)
def test_checker_runs_probes_in_another_process() -> None:
    """A process pool runs the probes; the values do not cross, and the checker says so.

    The "spawn" start method, because a forked worker would begin life with
    the forking thread's context.
    """
    spawning = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=spawning)
    with pool, pytest.raises(ContextIsolationError) as info:
        assert_context_isolation(
            lambda fn: pool.submit(fn).result(timeout=LONG_WAIT),
            one_spawner(SpawnStep((0,), (0,))),
            timeout=LONG_WAIT,
        )
    assert "spawned code saw request_id unset, but spawner A had request_id='A1'" in str(info.value)


def test_failure_says_whose_variables_these_are() -> None:
    """A failure says request_id and the rest are the checker's probes, and what to use instead."""
    with pytest.raises(ContextIsolationError) as info:
        # Runs the code in an empty context: it sees none of the spawner's values.
        assert_context_isolation(contextvars.Context().run, one_spawner(SpawnStep((0,), ())))
    message = str(info.value)
    assert "request_id, tenant" in message
    assert "are the checker's own probe variables (contextthreads.testing.VARIABLE_POOL)" in message
    assert "ContextThreadPoolExecutor" in message
    assert "contextthreads.install()" in message


def test_missing_hypothesis_is_a_clear_import_error() -> None:
    """Without hypothesis, importing contextthreads.testing says what to install."""
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n    import contextthreads.testing\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "contextthreads.testing needs hypothesis" in proc.stdout
    assert "pip install hypothesis" in proc.stdout
    assert "contextthreads[testing]" in proc.stdout
