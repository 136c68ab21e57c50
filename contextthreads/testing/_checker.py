"""Check that a user's spawn function gives spawned code its own copy of the context."""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import itertools
import pickle
import sys
import threading
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from hypothesis import HealthCheck, example, given, settings
from hypothesis.errors import Flaky

from . import _variables
from ._strategies import (
    IsolationScenario,
    SpawnerPlan,
    SpawnStep,
    isolation_scenarios,
    spawner_label,
)
from ._variables import VARIABLE_POOL, checked_variables

__all__ = (
    "ContextIsolationError",
    "Spawn",
    "assert_context_isolation",
    "check_context_isolation",
)

#: ``spawn(fn)`` runs ``fn()`` somewhere (another thread, a pool, a process),
#: waits for it, and returns what ``fn()`` returned.
Spawn = Callable[[Callable[[], Any]], Any]

_MISSING = object()
_tokens = itertools.count()
_Seen = tuple[str, tuple[tuple[int, Any], ...]]


class ContextIsolationError(AssertionError):
    """Spawned code did not run in its own copy of the spawner's context.

    The message tells the first thing that went wrong and the scenario that
    shows it. Being an ``AssertionError``, pytest reports it as a failed test.
    """


def _var_ref(var: ContextVar[Any]) -> tuple[str, str]:
    # A ContextVar cannot be pickled, but a module-level one can be named. The
    # pool's own module first: test modules often hold pool variables too, and
    # may not be importable in the receiving process.
    if var in VARIABLE_POOL:
        return _variables.__name__, var.name
    for name, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            if value is var and not attr.startswith("__"):
                return name, attr
    raise pickle.PicklingError(
        f"ContextVar {var.name!r} is not a module-level global, so code running in "
        "another process cannot find it: define it at module level"
    )


def _var_from_ref(module: str, attr: str) -> ContextVar[Any]:
    var: ContextVar[Any] = getattr(importlib.import_module(module), attr)
    return var


def _rebuild_probe(
    refs: tuple[tuple[str, str], ...], writes: tuple[tuple[int, str], ...], token: str
) -> _Probe:
    return _Probe(tuple(_var_from_ref(*ref) for ref in refs), writes, token)


class _Probe:
    """What the checker hands to ``spawn()``: read every variable, then write some.

    Runs in whatever context ``spawn()`` gives it. It pickles by naming its
    variables' modules, so process pools can run it too.
    """

    def __init__(
        self,
        variables: tuple[ContextVar[Any], ...],
        writes: tuple[tuple[int, str], ...],
        token: str,
    ) -> None:
        self.variables = variables
        self.writes = writes
        self.token = token

    def __call__(self) -> _Seen:
        seen = tuple(
            (i, value)
            for i, var in enumerate(self.variables)
            if (value := var.get(_MISSING)) is not _MISSING
        )
        for i, value in self.writes:
            self.variables[i].set(value)
        return self.token, seen

    def __reduce__(self) -> tuple[Any, ...]:
        refs = tuple(_var_ref(var) for var in self.variables)
        return _rebuild_probe, (refs, self.writes, self.token)

    def __repr__(self) -> str:
        return f"<contextthreads.testing probe {self.token}>"


@dataclass
class _Outcome:
    """What one spawner thread observed; filled by that thread, read after join."""

    started: threading.Event = field(default_factory=threading.Event)
    # (step, values seen by the spawned code, spawner's values after spawn returned)
    spawns: list[tuple[int, dict[int, Any], dict[int, Any]]] = field(default_factory=list)
    in_spawn: Optional[int] = None
    error: Optional[tuple[int, BaseException]] = None
    wrong_return: Optional[tuple[int, Any]] = None


def _snapshot(variables: tuple[ContextVar[Any], ...]) -> dict[int, Any]:
    return {
        i: value for i, var in enumerate(variables) if (value := var.get(_MISSING)) is not _MISSING
    }


def _set_value(label: str, k: int) -> str:
    return f"{label}{k + 1}"


def _written_value(label: str, k: int) -> str:
    return f"written-in-{label}{k + 1}"


def _run_spawner(
    spawn: Spawn,
    variables: tuple[ContextVar[Any], ...],
    label: str,
    plan: SpawnerPlan,
    barrier: threading.Barrier,
    timeout: float,
    outcome: _Outcome,
) -> None:
    outcome.started.set()
    # If another spawner is late or failed, still run, alone.
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(timeout)
    for k, step in enumerate(plan.steps):
        for i in step.sets:
            variables[i].set(_set_value(label, k))
        writes = tuple((i, _written_value(label, k)) for i in step.writes)
        probe = _Probe(variables, writes, f"{label}{k + 1}:{next(_tokens)}")
        outcome.in_spawn = k
        try:
            returned = spawn(probe)
        except BaseException as exc:  # reported by the checker, with the scenario
            outcome.error = (k, exc)
            return
        finally:
            outcome.in_spawn = None
        if not isinstance(returned, tuple) or len(returned) != 2 or returned[0] != probe.token:
            outcome.wrong_return = (k, returned)
            return
        outcome.spawns.append((k, dict(returned[1]), _snapshot(variables)))


def _show(variables: tuple[ContextVar[Any], ...], i: int, value: Any) -> str:
    name = variables[i].name
    return f"{name} unset" if value is _MISSING else f"{name}={value!r}"


class _Explainer:
    """Turn a wrong value into a sentence that says where it came from."""

    def __init__(self, scenario: IsolationScenario) -> None:
        self.variables = scenario.variables
        self.origin: dict[tuple[int, str], str] = {}
        for s_index, plan in enumerate(scenario.spawners):
            label = spawner_label(s_index)
            for k, step in enumerate(plan.steps):
                for i in step.sets:
                    self.origin[(i, _set_value(label, k))] = (
                        f"the value spawner {label} set before its spawn #{k + 1}"
                    )
                for i in step.writes:
                    self.origin[(i, _written_value(label, k))] = (
                        f"written inside the code spawner {label} spawned with spawn #{k + 1}"
                    )

    def where_from(self, i: int, value: Any) -> str:
        if value is _MISSING:
            return ""
        if isinstance(value, str) and (i, value) in self.origin:
            return f" ({self.origin[(i, value)]})"
        return " (a value the checker never set: it came from outside the spawner's context)"


def _expected_states(plan: SpawnerPlan, label: str) -> list[dict[int, Any]]:
    state: dict[int, Any] = {}
    states = []
    for k, step in enumerate(plan.steps):
        for i in step.sets:
            state[i] = _set_value(label, k)
        states.append(dict(state))
    return states


def _first_violation(
    scenario: IsolationScenario, outcomes: list[_Outcome], timeout: float
) -> Optional[str]:
    explain = _Explainer(scenario)
    variables = scenario.variables
    concurrent = len(scenario.spawners) > 1
    for s_index, (plan, outcome) in enumerate(zip(scenario.spawners, outcomes)):
        label = spawner_label(s_index)
        expected = _expected_states(plan, label)
        for k, seen, after in outcome.spawns:
            want = expected[k]
            for i in range(len(variables)):
                got = seen.get(i, _MISSING)
                wanted = want.get(i, _MISSING)
                if got == wanted:
                    continue
                if isinstance(got, str) and got.startswith("written-in-"):
                    rule = "writes inside spawned code must never reach other spawns"
                else:
                    rule = "spawned code must see the values current at spawn time"
                return (
                    f"spawned code saw {_show(variables, i, got)}{explain.where_from(i, got)}, "
                    f"but spawner {label} had {_show(variables, i, wanted)} when it called "
                    f"spawn() (spawn #{k + 1}): {rule}"
                )
            for i in range(len(variables)):
                got = after.get(i, _MISSING)
                wanted = want.get(i, _MISSING)
                if got == wanted:
                    continue
                if isinstance(got, str) and got.startswith("written-in-"):
                    return (
                        f"a write of {_show(variables, i, got)} inside spawned code"
                        f"{explain.where_from(i, got)} leaked back to spawner {label} (after "
                        f"spawn #{k + 1} returned it should still have had "
                        f"{_show(variables, i, wanted)})"
                    )
                return (
                    f"after spawn #{k + 1} returned, spawner {label} had "
                    f"{_show(variables, i, got)}{explain.where_from(i, got)} instead of "
                    f"{_show(variables, i, wanted)}: spawn() changed the spawner's context"
                )
        if outcome.error is not None:
            k, exc = outcome.error
            hint = ""
            if "cannot enter context" in str(exc):
                hint = (
                    ": one Context was entered by two threads at once, so the spawn "
                    "mechanism shares a Context between spawns instead of copying it"
                )
            during = " while other spawners called spawn() at the same time" if concurrent else ""
            return (
                f"spawn() raised {type(exc).__name__}: {exc} (spawner {label}, "
                f"spawn #{k + 1}{during}){hint}"
            )
        if outcome.wrong_return is not None:
            k, returned = outcome.wrong_return
            return (
                f"spawn(fn) must wait for fn and return what fn returned, but spawner "
                f"{label}'s spawn #{k + 1} returned {returned!r}"
                + (" (did you forget .result()?)" if hasattr(returned, "result") else "")
            )
        if not outcome.started.is_set():
            return f"spawner {label}'s thread did not start within {timeout}s"
        if len(outcome.spawns) < len(plan.steps):
            k = outcome.in_spawn if outcome.in_spawn is not None else len(outcome.spawns)
            return (
                f"spawn() did not return within {timeout}s (spawner {label}, "
                f"spawn #{k + 1}): spawn(fn) must run fn and wait for it"
            )
    return None


def assert_context_isolation(
    spawn: Spawn, scenario: IsolationScenario, *, timeout: float = 10.0
) -> None:
    """Run ``scenario`` through ``spawn`` and raise ``ContextIsolationError`` if it leaks.

    The contract of ``spawn``: ``spawn(fn)`` runs the zero-argument callable
    ``fn`` once, anywhere (a thread, a pool, another process if ``fn`` pickles),
    waits for it, and returns what it returned (raising what it raised).
    ``spawn`` is called from several threads at once, each started by the
    checker in an empty context, so it must be thread-safe.

    Each spawner thread of the scenario sets its variables and calls
    ``spawn()``. The check fails if the spawned code did not see exactly the
    spawner's values at the moment of the call, if its writes reached the
    spawner or any other spawn, if ``spawn()`` raised or returned something
    else, or if a spawner did not finish within ``timeout`` seconds (such a
    thread is left running as a daemon). Use it as a building block under
    ``@given(isolation_scenarios())``; ``check_context_isolation()`` does that
    for you.

    Args:
        spawn: The mechanism under test, as above.
        scenario: Who spawns what, drawn from ``isolation_scenarios()``.
        timeout: Seconds each spawner thread has to start, and then to finish.

    Raises:
        ContextIsolationError: Saying what went wrong first, with the
            scenario; chained to what ``spawn()`` raised, if it raised.
    """
    variables = scenario.variables
    outcomes = [_Outcome() for _ in scenario.spawners]
    barrier = threading.Barrier(len(scenario.spawners))
    threads = []
    for s_index, plan in enumerate(scenario.spawners):
        # Every spawner starts in an empty context, whatever the caller has set
        # and whether or not plain threads inherit contexts.
        fresh = contextvars.Context()
        args = (spawn, variables, spawner_label(s_index), plan, barrier, timeout)
        thread = threading.Thread(
            target=fresh.run,
            args=(_run_spawner, *args, outcomes[s_index]),
            name=f"contextthreads-spawner-{spawner_label(s_index)}",
            daemon=True,
        )
        threads.append(thread)
        thread.start()
    # A busy machine may be slow to schedule new threads: let them start
    # before the time for spawn() itself is counted.
    for outcome in outcomes:
        outcome.started.wait(timeout)
    for thread in threads:
        thread.join(timeout)
    problem = _first_violation(scenario, outcomes, timeout)
    if problem is None:
        return
    cause = next((o.error[1] for o in outcomes if o.error is not None), None)
    error = ContextIsolationError(
        f"Context isolation failed: {problem}.\n"
        f"Scenario (each spawner is a thread started in an empty context):\n"
        f"{scenario.describe()}\n{_about_variables(variables)}"
    )
    raise error from cause


def _about_variables(variables: tuple[ContextVar[Any], ...]) -> str:
    names = ", ".join(var.name for var in variables)
    own = all(var in VARIABLE_POOL for var in variables)
    whose = (
        "are the checker's own probe variables (contextthreads.testing.VARIABLE_POOL), "
        "not yours: the spawn mechanism must carry every ContextVar"
        if own
        else "are the variables you passed"
    )
    return (
        f"({names} {whose}. To carry the context, spawn with contextthreads' classes "
        "(ContextThread, ContextThreadPoolExecutor, bind), or call contextthreads.install() "
        "before spawning.)"
    )


def _simple_examples(
    variables: tuple[ContextVar[Any], ...],
) -> list[IsolationScenario]:
    # Tried first on every run, so that a broken mechanism fails even with few
    # examples: hypothesis does not shrink these, so they are already small.
    first, second = 0, 1 % len(variables)
    alone = SpawnerPlan(
        (SpawnStep(sets=(first,), writes=(second,)), SpawnStep(sets=(), writes=(first,)))
    )
    together = tuple(SpawnerPlan((SpawnStep(sets=(first,), writes=(first,)),)) for _ in range(3))
    return [IsolationScenario(variables, (alone,)), IsolationScenario(variables, together)]


def check_context_isolation(
    spawn: Spawn,
    *,
    variables: Optional[Sequence[ContextVar[Any]]] = None,
    max_examples: Optional[int] = None,
    max_spawners: int = 3,
    max_spawns: int = 3,
    timeout: float = 10.0,
) -> None:
    """Property-test ``spawn`` and raise ``ContextIsolationError`` with a counterexample.

    Checks, over scenarios hypothesis draws and shrinks, that (a) spawned code
    sees the values current in the spawner's context when ``spawn()`` is
    called; (b) its writes never reach the spawner or other spawns; (c) spawns
    made at the same time from different threads, each in its own context,
    each see their own values. See ``assert_context_isolation()`` for the
    contract ``spawn`` must follow.

    Two small scenarios run first, every time, so that a broken mechanism
    fails even with few examples. Call it straight from a test function, not
    from inside an ``@given`` test: there, use ``assert_context_isolation()``
    with ``isolation_scenarios()``.

    Args:
        spawn: The mechanism under test: ``spawn(fn)`` runs ``fn``, waits for
            it and returns its result; thread-safe.
        variables: The ``ContextVar``\\ s to set and check, distinct and at
            least one; by default ``VARIABLE_POOL``. Pass your own
            module-level variables when the mechanism carries only chosen
            ones (``install(only=...)``, ``WorkerPoolConfig.context_vars``).
        max_examples: How many scenarios hypothesis draws; by default the
            current hypothesis profile's.
        max_spawners: The most spawner threads in one scenario.
        max_spawns: The most ``spawn()`` calls of one spawner.
        timeout: Seconds each spawner has to start, and then to finish.

    Raises:
        ContextIsolationError: With the smallest scenario hypothesis found
            that fails; a failure that did not repeat is said to be racy.
        ValueError: If ``variables`` is empty or repeats a variable
            (``TypeError`` if it holds something else).
    """
    pool = checked_variables(variables)
    strategy = isolation_scenarios(pool, max_spawners=max_spawners, max_spawns=max_spawns)

    def context_isolation(scenario: IsolationScenario) -> None:
        assert_context_isolation(spawn, scenario, timeout=timeout)

    test = given(strategy)(context_isolation)
    for scenario in reversed(_simple_examples(pool)):  # example() runs the last applied first
        test = example(scenario)(test)
    configured = settings(
        max_examples=settings().max_examples if max_examples is None else max_examples,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow],
    )(test)
    try:
        configured()
    except Flaky as exc:
        inner = [e for e in getattr(exc, "exceptions", ()) if isinstance(e, ContextIsolationError)]
        message = str(inner[0]) if inner else str(exc)
        raise ContextIsolationError(
            f"{message}\n(The failure did not happen on every run: the mechanism is racy.)"
        ) from exc
