"""Case 1: no-op tasks through the executor, against the stdlib and its peers."""

from __future__ import annotations

import contextlib
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

from _common import noop, set_context_vars
from _harness import Row, compare_each, timed

from contextthreads import ContextThreadPoolExecutor

WORKERS = 4
CASE = "1. no-op tasks, 4 workers, 10 ContextVars"
OTEL = "ThreadPoolExecutor + OpenTelemetry threading"
SHORTCUT = "ThreadPoolExecutor, no idle check when full"


class ShortcutThreadPoolExecutor(ThreadPoolExecutor):
    """The stdlib pool with ours' one change besides contexts: no idle check when full.

    What ContextThreadPoolExecutor costs against it is what carrying the
    context costs.
    """

    def _adjust_thread_count(self) -> None:
        if len(self._threads) < self._max_workers:
            super()._adjust_thread_count()


def _otel() -> Any | None:
    try:
        from opentelemetry.instrumentation.threading import ThreadingInstrumentor
    except ImportError:
        return None
    return ThreadingInstrumentor()


def _warm(ex: ThreadPoolExecutor) -> ThreadPoolExecutor:
    # Start every worker before timing, so no round pays for thread creation.
    for f in [ex.submit(noop) for _ in range(WORKERS * 50)]:
        f.result()
    return ex


def _submitting(
    ex: ThreadPoolExecutor,
    submit: Callable[[ThreadPoolExecutor], Any],
    around: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
) -> Callable[[int], float]:
    def variant(n: int) -> float:
        def body() -> None:
            futures = [submit(ex) for _ in range(n)]
            for f in futures:
                f.result()

        with around():
            return timed(body)

    return variant


def run(ops: int, rounds: int) -> list[Row]:
    """Time ``ops`` no-op submits per round for every variant; return the table rows."""
    set_context_vars(10)
    stdlib = _warm(ThreadPoolExecutor(WORKERS))
    ours = _warm(ContextThreadPoolExecutor(WORKERS))
    hand = _warm(ThreadPoolExecutor(WORKERS))
    shortcut = _warm(ShortcutThreadPoolExecutor(WORKERS))
    executors = [stdlib, ours, hand, shortcut]
    variants = {
        "ContextThreadPoolExecutor": _submitting(ours, lambda ex: ex.submit(noop)),
        SHORTCUT: _submitting(shortcut, lambda ex: ex.submit(noop)),
        "submit(copy_context().run, fn)": _submitting(
            hand, lambda ex: ex.submit(contextvars.copy_context().run, noop)
        ),
    }
    instrumented = _instrumented()
    if instrumented is not None:
        otel = _warm(ThreadPoolExecutor(WORKERS))
        executors.append(otel)
        variants[OTEL] = _submitting(otel, lambda ex: ex.submit(noop), instrumented)
    try:
        rows = compare_each(
            CASE,
            "ThreadPoolExecutor",
            _submitting(stdlib, lambda ex: ex.submit(noop)),
            variants,
            ops,
            rounds,
            {"ContextThreadPoolExecutor": "<=1.03x"},
        )
    finally:
        for ex in executors:
            ex.shutdown()
    if instrumented is None:
        missing = [float("nan")] * 4
        note = "skipped: opentelemetry-instrumentation-threading not installed"
        rows.append(Row(CASE, OTEL, "ThreadPoolExecutor", *missing, note=note))
    return rows


def _instrumented() -> Callable[[], contextlib.AbstractContextManager[object]] | None:
    """Return a context manager factory that turns OpenTelemetry's instrumentation on, if installed.

    The instrumentor patches the stdlib classes that every other variant uses,
    so it is on only during its own rounds, which compare_each keeps apart from
    the other variants': switching it on and off also slows the rounds next to
    it (each switch invalidates the interpreter's attribute caches for those
    classes).
    """
    instrumentor = _otel()
    if instrumentor is None:
        return None

    @contextlib.contextmanager
    def instrumented() -> Iterator[None]:
        instrumentor.instrument()
        try:
            yield
        finally:
            instrumentor.uninstrument()

    return instrumented
