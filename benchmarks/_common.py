"""Helpers shared by the benchmark cases."""

from __future__ import annotations

import contextvars

_VARS = [contextvars.ContextVar(f"bench_var_{i}") for i in range(10)]


def set_context_vars(count: int = 10) -> None:
    """Set ``count`` ContextVars in the current context, as a traced app would have."""
    for i, var in enumerate(_VARS[:count]):
        var.set(f"value-{i}")


def noop(*args: object) -> None:
    """Do nothing: the task whose cost is all overhead."""
