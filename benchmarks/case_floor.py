"""Case 6 (on request): where a pooled task's context overhead goes, piece by piece.

Not part of the default run. Each variant is the stdlib pool with one piece
of what ``ContextThreadPoolExecutor`` does per task, wired through 3.14's
``prepare_context`` hook exactly as ours is: taking the copy, letting the
worker free it, entering a context in the worker (one it made itself, or one
made by the submitter), and all of it (our executor). Each is timed against
the stdlib pool in rounds of its own (see ``compare_each``). Every pool here,
the baseline too, skips the idle check once full as ours does, so that what
the pieces add up to is the context's cost alone.
"""

from __future__ import annotations

import contextvars
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from _common import noop, set_context_vars
from _harness import Row, compare_each
from case_executor import SHORTCUT, WORKERS, ShortcutThreadPoolExecutor, _submitting, _warm

from contextthreads import ContextThreadPoolExecutor

CASE = "6. where a task's overhead goes (3.14 hook)"

Task = Any


def _pool(worker: type, resolve: Callable[..., Task]) -> type[ThreadPoolExecutor]:
    """Return a stdlib pool class whose workers are ``worker`` and tasks ``resolve``'s."""

    class Pool(ShortcutThreadPoolExecutor):
        @classmethod
        def prepare_context(cls, initializer: Any, initargs: Any) -> Any:
            return (lambda: worker(initializer, initargs)), resolve

    return Pool


def _no_copy(fn: Any, args: Any, kwargs: Any) -> Task:
    return (None, fn, args, kwargs)


def _copy_kept_by_submitter(fn: Any, args: Any, kwargs: Any) -> Task:
    contextvars.copy_context()
    return (None, fn, args, kwargs)


def _copy_to_worker(fn: Any, args: Any, kwargs: Any) -> Task:
    return (contextvars.copy_context(), fn, args, kwargs)


def _empty_to_worker(fn: Any, args: Any, kwargs: Any) -> Task:
    return (contextvars.Context(), fn, args, kwargs)


def _workers() -> tuple[type, type, type]:
    from concurrent.futures.thread import WorkerContext

    class Call(WorkerContext):
        # Unpacks our four-item task as ours does, and calls without spreading.
        def run(self, task: Task) -> Any:
            _context, fn, _args, _kwargs = task
            del task
            return fn()

    class EnterFresh(WorkerContext):
        def run(self, task: Task) -> Any:
            _context, fn, _args, _kwargs = task
            del task
            return contextvars.Context().run(fn)

    class EnterGiven(WorkerContext):
        def run(self, task: Task) -> Any:
            context, fn, _args, _kwargs = task
            del task
            return context.run(fn)

    return Call, EnterFresh, EnterGiven


def run(ops: int, rounds: int) -> list[Row]:
    """Time ``ops`` no-op submits per round for each piece; return the table rows."""
    if sys.version_info < (3, 14):
        return [Row(CASE, "all pieces", SHORTCUT, *[float("nan")] * 4, note="needs 3.14")]
    set_context_vars(10)
    call, enter_fresh, enter_given = _workers()
    pieces: dict[str, type[ThreadPoolExecutor]] = {
        "our task tuple, no context": _pool(call, _no_copy),
        "+ copy, freed by the submitter": _pool(call, _copy_kept_by_submitter),
        "+ copy, freed by the worker": _pool(call, _copy_to_worker),
        "+ worker enters a Context it made": _pool(enter_fresh, _no_copy),
        "+ worker enters an empty Context the submitter made": _pool(enter_given, _empty_to_worker),
        "ContextThreadPoolExecutor (all of it)": ContextThreadPoolExecutor,
    }
    stdlib = _warm(ShortcutThreadPoolExecutor(WORKERS))
    executors = {name: _warm(cls(WORKERS)) for name, cls in pieces.items()}
    try:
        return compare_each(
            CASE,
            SHORTCUT,
            _submitting(stdlib, lambda ex: ex.submit(noop)),
            {name: _submitting(ex, lambda ex: ex.submit(noop)) for name, ex in executors.items()},
            ops,
            rounds,
        )
    finally:
        for ex in [stdlib, *executors.values()]:
            ex.shutdown()
