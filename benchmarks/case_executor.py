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
    variants = {
        "ThreadPoolExecutor": _submitting(stdlib, lambda ex: ex.submit(noop)),
        "ContextThreadPoolExecutor": _submitting(ours, lambda ex: ex.submit(noop)),
        "submit(copy_context().run, fn)": _submitting(
            hand, lambda ex: ex.submit(contextvars.copy_context().run, noop)
        ),
    }
    targets = {"ContextThreadPoolExecutor": "<=1.03x"}
    instrumentor = _otel()
    executors = [stdlib, ours, hand]
    if instrumentor is not None:
        # Instrumented only during its own rounds: it patches the stdlib classes
        # that the other variants use too.
        @contextlib.contextmanager
        def instrumented() -> Iterator[None]:
            instrumentor.instrument()
            try:
                yield
            finally:
                instrumentor.uninstrument()

        otel_ex = _warm(ThreadPoolExecutor(WORKERS))
        executors.append(otel_ex)
        variants["ThreadPoolExecutor + OpenTelemetry threading"] = _submitting(
            otel_ex, lambda ex: ex.submit(noop), instrumented
        )
    try:
        rows = compare(
            "1. no-op tasks, 4 workers, 10 ContextVars",
            "ThreadPoolExecutor",
            variants,
            ops,
            rounds,
            targets,
        )
    finally:
        for ex in executors:
            ex.shutdown()
    if instrumentor is None:
        rows.append(
            Row(
                "1. no-op tasks, 4 workers, 10 ContextVars",
                "ThreadPoolExecutor + OpenTelemetry threading",
                "ThreadPoolExecutor",
                float("nan"),
                float("nan"),
                float("nan"),
                float("nan"),
                note="skipped: opentelemetry-instrumentation-threading not installed",
            )
        )
    return rows
