"""Bind a callable to the context current when it is bound."""

from __future__ import annotations

import contextvars
import functools

# Annotations only: importing typing would double this package's import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ._typing import P, T


def in_copies_of(context: contextvars.Context, fn: Callable[P, T], /) -> Callable[P, T]:
    """Return a callable that runs ``fn`` in a fresh copy of ``context`` on every call."""

    # Each call gets its own copy: one Context can be entered by only one
    # thread at a time, and calls must not see each other's writes.
    def call_in_context(*args: P.args, **kwargs: P.kwargs) -> T:
        return context.copy().run(fn, *args, **kwargs)

    return call_in_context


def bind(fn: Callable[P, T], /) -> Callable[P, T]:
    """Return a callable that runs ``fn`` in a copy of the current context.

    The context is captured once, when ``bind()`` is called. Every call of the
    returned callable runs ``fn`` in a fresh copy of it, so calls may run
    concurrently from any threads, see the values that were current at
    ``bind()``, and never see each other's writes or leak writes to the caller.
    ``functools.wraps`` metadata (``__name__``, ``__doc__``, ``__wrapped__``...)
    is kept.
    """
    if not callable(fn):
        raise TypeError(f"bind() argument must be callable, not {type(fn).__name__}")
    bound: Any = in_copies_of(contextvars.copy_context(), fn)
    return functools.wraps(fn)(bound)
