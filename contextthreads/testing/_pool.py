"""The bounded pool of ``ContextVar`` objects the strategies draw from.

A ``Context`` keeps a strong reference to every variable ever set in it, so a
strategy that created a fresh ``ContextVar`` per example would keep growing
the contexts that outlive the example. The variables are
module-level globals so that a probe shipped to another process can find them
there by name.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

__all__ = ("VARIABLE_POOL",)

request_id: ContextVar[Any] = ContextVar("request_id")
tenant: ContextVar[Any] = ContextVar("tenant")
user: ContextVar[Any] = ContextVar("user")
trace_id: ContextVar[Any] = ContextVar("trace_id")
locale: ContextVar[Any] = ContextVar("locale")
deadline: ContextVar[Any] = ContextVar("deadline")

#: Every variable of the pool, in a fixed order.
VARIABLE_POOL: tuple[ContextVar[Any], ...] = (request_id, tenant, user, trace_id, locale, deadline)
