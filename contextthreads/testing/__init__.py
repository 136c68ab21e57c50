"""Property-test that your own thread-spawning code keeps ``contextvars`` straight.

``check_context_isolation(spawn)`` takes a function that runs a callable
somewhere and returns its result, for example
``lambda fn: pool.submit(fn).result()``, and uses hypothesis to check that the
spawned code sees the spawner's values as they were at the call, that its
writes reach neither the spawner nor other spawns, and that spawns made at the
same time from different threads each see their own values. A failure raises
``ContextIsolationError`` (an ``AssertionError``) that says what went wrong.

This module needs hypothesis, which contextthreads itself does not depend on.
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        "contextthreads.testing needs hypothesis, which contextthreads does not install: "
        "pip install hypothesis (or pip install 'contextthreads[testing]')",
        name=exc.name,
    ) from exc

from ._checker import (
    ContextIsolationError,
    Spawn,
    assert_context_isolation,
    check_context_isolation,
)
from ._strategies import (
    IsolationScenario,
    SpawnerPlan,
    SpawnStep,
    context_assignments,
    context_vars,
    isolation_scenarios,
)
from ._variables import VARIABLE_POOL

# Tracebacks name the exception where users import it from.
ContextIsolationError.__module__ = __name__

__all__ = (
    "VARIABLE_POOL",
    "ContextIsolationError",
    "IsolationScenario",
    "Spawn",
    "SpawnStep",
    "SpawnerPlan",
    "assert_context_isolation",
    "check_context_isolation",
    "context_assignments",
    "context_vars",
    "isolation_scenarios",
)
