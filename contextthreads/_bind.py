"""Bind a callable to the context current when it is bound."""

from __future__ import annotations

import contextvars
import functools

# Annotations only: importing typing would double this package's import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ._typing import P, T


__all__ = ("bind", "context_run", "in_copies_of")

_native_run: Callable[..., Any] = contextvars.Context.run


def _call(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    return fn(*args, **kwargs)


def _run_passing_every_keyword(
    context: contextvars.Context, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> T:
    if kwargs:
        return _native_run(context, _call, fn, args, kwargs)  # type: ignore[no-any-return]
    return _native_run(context, fn, *args)  # type: ignore[no-any-return]


def _run_takes_every_keyword() -> bool:
    try:
        _native_run(contextvars.Context(), dict, self=None, callable=None)
    except TypeError:
        return False
    return True


#: ``Context.run`` unbound, ``(context, fn, /, *args, **kwargs)``, handing every keyword to
#: ``fn``. CPython's own, whose parameters are positional-only; PyPy's is a Python function
#: whose ``self`` and ``callable`` would take keywords of those names, so there it is a
#: wrapper that hands them over as a dict.
context_run: Callable[..., Any] = (
    _native_run if _run_takes_every_keyword() else _run_passing_every_keyword
)


def in_copies_of(context: contextvars.Context, fn: Callable[P, T], /) -> Callable[P, T]:
    """Return a callable that runs ``fn`` in a fresh copy of ``context`` on every call."""
    run = context_run

    # Each call gets its own copy: one Context can be entered by only one
    # thread at a time, and calls must not see each other's writes.
    def call_in_context(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(context.copy(), fn, *args, **kwargs)  # type: ignore[no-any-return]

    return call_in_context


def bind(fn: Callable[P, T], /) -> Callable[P, T]:
    """Return a callable that runs ``fn`` in a copy of the current context.

    The context is captured once, when ``bind()`` is called. Every call of the
    returned callable runs ``fn`` in a fresh copy of it, so calls may run
    concurrently from any threads, see the values that were current at
    ``bind()``, and never see each other's writes or leak writes to the caller.
    ``functools.wraps`` metadata (``__name__``, ``__doc__``, ``__wrapped__``...)
    is kept. Binding and calling are thread-safe.

    Args:
        fn: Any callable; positional-only.

    Returns:
        A callable with ``fn``'s parameters and return type, whose every call
        runs ``fn`` in a fresh copy of the context at ``bind()``.

    Raises:
        TypeError: When ``fn`` is not callable.
    """
    if not callable(fn):
        raise TypeError(f"bind() argument must be callable, not {type(fn).__name__}")
    bound: Any = in_copies_of(contextvars.copy_context(), fn)
    return functools.wraps(fn)(bound)
