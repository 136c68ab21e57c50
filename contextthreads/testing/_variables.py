"""The variables the strategies draw from: six module-level ``ContextVar`` objects.

A ``Context`` keeps a strong reference to every variable ever set in it, so a
strategy that created a fresh ``ContextVar`` per example would keep growing
the contexts that outlive the example. The variables are
module-level globals so that a probe shipped to another process can find them
there by name.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Optional, Sequence

__all__ = ("VARIABLE_POOL", "checked_variables")

request_id: ContextVar[Any] = ContextVar("request_id")
tenant: ContextVar[Any] = ContextVar("tenant")
user: ContextVar[Any] = ContextVar("user")
trace_id: ContextVar[Any] = ContextVar("trace_id")
locale: ContextVar[Any] = ContextVar("locale")
deadline: ContextVar[Any] = ContextVar("deadline")

#: Every variable of the pool, in a fixed order.
VARIABLE_POOL: tuple[ContextVar[Any], ...] = (request_id, tenant, user, trace_id, locale, deadline)


def checked_variables(
    variables: Optional[Sequence[ContextVar[Any]]],
) -> tuple[ContextVar[Any], ...]:
    """Return ``variables`` (default ``VARIABLE_POOL``) as a tuple, or raise if it is unusable.

    Raises ``ValueError`` for an empty or repeating sequence, ``TypeError`` for
    anything that is not a ``ContextVar``.
    """
    pool = VARIABLE_POOL if variables is None else tuple(variables)
    if not pool:
        raise ValueError("variables must hold at least one ContextVar")
    for var in pool:
        if not isinstance(var, ContextVar):
            raise TypeError(f"variables must be ContextVar objects, not {type(var).__name__}")
    if len(set(pool)) != len(pool):
        raise ValueError("variables must not repeat a ContextVar")
    return pool
