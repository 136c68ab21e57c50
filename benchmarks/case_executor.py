"""Case 1: no-op tasks through the executor, against the stdlib and its peers."""

from __future__ import annotations

import contextlib
import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

from _common import noop, set_context_vars
from _harness import Row, compare, timed

from contextthreads import ContextThreadPoolExecutor

WORKERS = 4
CASE = "1. no-op tasks, 4 workers, 10 ContextVars"
TARGETS = {"ContextThreadPoolExecutor": "<=1.03x"}


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
    baseline = _submitting(stdlib, lambda ex: ex.submit(noop))
    variants = {
        "ThreadPoolExecutor": baseline,
        "ContextThreadPoolExecutor": _submitting(ours, lambda ex: ex.submit(noop)),
        "submit(copy_context().run, fn)": _submitting(
            hand, lambda ex: ex.submit(contextvars.copy_context().run, noop)
        ),
    }
    executors = [stdlib, ours, hand]
    try:
        rows = compare(CASE, "ThreadPoolExecutor", variants, ops, rounds, TARGETS)
        rows += _against_opentelemetry(baseline, ops, rounds)
    finally:
        for ex in executors:
            ex.shutdown()
    return rows


def _against_opentelemetry(baseline: Callable[[int], float], ops: int, rounds: int) -> list[Row]:
    """Time the stdlib pool under OpenTelemetry against ``baseline``, in rounds of its own.

    The instrumentor patches the stdlib classes that every other variant uses,
    so it is on only during its own rounds; switching it on and off, round after
    round, also slows the rounds next to it (each switch invalidates the
    interpreter's attribute caches for those classes), so it gets a comparison
    of its own instead of sharing one with ``ContextThreadPoolExecutor``.
    """
    name = "ThreadPoolExecutor + OpenTelemetry threading"
    instrumentor = _otel()
    if instrumentor is None:
        missing = [float("nan")] * 4
        note = "skipped: opentelemetry-instrumentation-threading not installed"
        return [Row(CASE, name, "ThreadPoolExecutor", *missing, note=note)]

    @contextlib.contextmanager
    def instrumented() -> Iterator[None]:
        instrumentor.instrument()
        try:
            yield
        finally:
            instrumentor.uninstrument()

    otel_ex = _warm(ThreadPoolExecutor(WORKERS))
    try:
        variants = {
            "ThreadPoolExecutor": baseline,
            name: _submitting(otel_ex, lambda ex: ex.submit(noop), instrumented),
        }
        # The baseline's own row is already in the table.
        return compare(CASE, "ThreadPoolExecutor", variants, ops, rounds)[1:]
    finally:
        otel_ex.shutdown()
