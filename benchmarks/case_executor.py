"""Case 1: pool tasks in every workload shape, against the stdlib and its peers.

Every shape times ``ContextThreadPoolExecutor`` against the stdlib's pool,
each round with the cyclic GC running as in any program, from a fresh
collection (a burst's collections are much of its cost, and differ with what
a queued task keeps alive). Ten ``ContextVar``s are set in every submitter.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import statistics
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

from _common import noop, set_context_vars
from _harness import Row, compare_each, timed

from contextthreads import ContextThreadPoolExecutor

WORKERS = 4
SUBMITTERS = 8
CASE = "1. pool tasks, 4 workers, 10 ContextVars"
STDLIB = "ThreadPoolExecutor"
OURS = "ContextThreadPoolExecutor"
OTEL = "ThreadPoolExecutor + OpenTelemetry threading"
SHORTCUT = "ThreadPoolExecutor, no idle check when full"
HAND = "submit(copy_context().run, fn)"
#: Ours against the stdlib: at most 1.03x anywhere, and ahead where the pool is full (every
#: shape here, bursts after their first four tasks).
TARGET = {OURS: "<1x"}
#: Bound on any one wait in a round.
WAIT = 120.0

Variant = Callable[[int], float]


class ShortcutThreadPoolExecutor(ThreadPoolExecutor):
    """The stdlib pool with ours' one change besides contexts: no idle check when full.

    What ContextThreadPoolExecutor costs against it is what carrying the
    context costs.
    """

    def _adjust_thread_count(self) -> None:
        if len(self._threads) < self._max_workers:
            super()._adjust_thread_count()


def work() -> int:
    """Do a few microseconds of Python: a short task that is not all overhead."""
    total = 0
    for i in range(100):
        total += i * i
    return total


def takes(*args: object, **kwargs: object) -> None:
    """Do nothing with positional and keyword arguments."""


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
) -> Variant:
    """Return a variant: ``n`` calls of ``submit(ex)`` into a warm pool, then every result."""

    def variant(n: int) -> float:
        def body() -> None:
            futures = [submit(ex) for _ in range(n)]
            for f in futures:
                f.result(WAIT)

        with around():
            return timed(body, gc_on=True)

    return variant


class _Collections:
    """A ``gc.callbacks`` entry: count the collections, and the full ones, of each round."""

    def __init__(self) -> None:
        self.rounds: list[tuple[int, int]] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            young, full = self.rounds[-1]
            self.rounds[-1] = (young + 1, full + (info["generation"] == 2))

    def note(self) -> str:
        if not hasattr(gc, "callbacks"):
            return "GC per burst: not counted (no gc.callbacks here)"  # PyPy
        young = statistics.median(young for young, _ in self.rounds)
        full = statistics.median(full for _, full in self.rounds)
        return f"GC per burst: {young:.0f} collections, {full:.0f} full"


def _burst(pool: type[ThreadPoolExecutor], collections: _Collections) -> Variant:
    """Return a variant: a fresh pool, ``n`` no-ops, every result, shutdown."""

    def variant(n: int) -> float:
        def body() -> None:
            collections.rounds.append((0, 0))
            callbacks = getattr(gc, "callbacks", [])  # PyPy has none
            callbacks.append(collections)
            try:
                ex = pool(WORKERS)
                futures = [ex.submit(noop) for _ in range(n)]
                for f in futures:
                    f.result(WAIT)
                ex.shutdown()
            finally:
                callbacks.remove(collections)

        return timed(body, gc_on=True)

    return variant


def _mapping(ex: ThreadPoolExecutor, **options: Any) -> Variant:
    def variant(n: int) -> float:
        def body() -> None:
            for _ in ex.map(noop, range(n), timeout=WAIT, **options):
                pass

        return timed(body, gc_on=True)

    return variant


class _Submitters:
    """``SUBMITTERS`` threads that, each round, submit their share of no-ops into one pool.

    Each has ten ContextVars set in its own context. The round is timed from
    releasing them to the last of them having every result.
    """

    def __init__(self, ex: ThreadPoolExecutor) -> None:
        self._ex = ex
        self._share = 0
        self._go = threading.Barrier(SUBMITTERS + 1)
        self._done = threading.Barrier(SUBMITTERS + 1)
        self._threads = [
            threading.Thread(target=self._submit, daemon=True) for _ in range(SUBMITTERS)
        ]
        for thread in self._threads:
            thread.start()

    def _submit(self) -> None:
        set_context_vars(10)
        while True:
            self._go.wait(WAIT)
            if self._share < 0:
                return
            futures = [self._ex.submit(noop) for _ in range(self._share)]
            for f in futures:
                f.result(WAIT)
            self._done.wait(WAIT)

    def __call__(self, n: int) -> float:
        self._share = n // SUBMITTERS

        def body() -> None:
            self._go.wait(WAIT)
            self._done.wait(WAIT)

        return timed(body, gc_on=True)

    def close(self) -> None:
        self._share = -1
        self._go.wait(WAIT)
        for thread in self._threads:
            thread.join(WAIT)


def run(ops: int, rounds: int, burst: int, burst_rounds: int) -> list[Row]:
    """Time every shape, ``ops`` tasks per round; return the table rows."""
    set_context_vars(10)
    rows: list[Row] = []
    with contextlib.ExitStack() as pools:

        def warm(pool: type[ThreadPoolExecutor]) -> ThreadPoolExecutor:
            ex = _warm(pool(WORKERS))
            pools.callback(ex.shutdown)
            return ex

        def shape(name: str, base: Variant, variants: dict[str, Variant], n: int, r: int) -> None:
            found = compare_each(f"{CASE}: {name}", STDLIB, base, variants, n, r, TARGET)
            rows.extend(found)

        # The steady state, and the peers that carry a context another way.
        stdlib = warm(ThreadPoolExecutor)
        peers = {
            OURS: _submitting(warm(ContextThreadPoolExecutor), lambda ex: ex.submit(noop)),
            SHORTCUT: _submitting(warm(ShortcutThreadPoolExecutor), lambda ex: ex.submit(noop)),
            HAND: _submitting(
                warm(ThreadPoolExecutor),
                lambda ex: ex.submit(contextvars.copy_context().run, noop),
            ),
        }
        instrumented = _instrumented()
        if instrumented is not None:
            otel = warm(ThreadPoolExecutor)
            peers[OTEL] = _submitting(otel, lambda ex: ex.submit(noop), instrumented)
        base = _submitting(stdlib, lambda ex: ex.submit(noop))
        shape("warm pool, no-ops", base, peers, ops, rounds)
        if instrumented is None:
            note = "skipped: opentelemetry-instrumentation-threading not installed"
            missing = [float("nan")] * 4
            rows.append(Row(f"{CASE}: warm pool, no-ops", OTEL, STDLIB, *missing, note=note))

        ours = warm(ContextThreadPoolExecutor)
        for name, submit in [
            ("warm pool, tasks with arguments", lambda ex: ex.submit(takes, 1, "two", key=3)),
            ("warm pool, a few us of Python per task", lambda ex: ex.submit(work)),
        ]:
            shape(name, _submitting(stdlib, submit), {OURS: _submitting(ours, submit)}, ops, rounds)

        for n, r in [(ops, rounds), (burst, burst_rounds)]:
            # How many collections, and full ones, each side's bursts met.
            theirs, ours_gc = _Collections(), _Collections()
            bursts = {OURS: _burst(ContextThreadPoolExecutor, ours_gc)}
            base = _burst(ThreadPoolExecutor, theirs)
            shape(f"burst of {n:,} into a fresh pool", base, bursts, n, r)
            rows[-2].note, rows[-1].note = theirs.note(), ours_gc.note()

        submitters = [_Submitters(stdlib), _Submitters(ours)]
        for each in submitters:
            pools.callback(each.close)
        name = f"{SUBMITTERS} threads submitting into one warm pool"
        shape(name, submitters[0], {OURS: submitters[1]}, ops * 2, rounds)

        maps = [("map()", {})]
        if sys.version_info >= (3, 14):
            maps.append((f"map(buffersize={WORKERS * 4})", {"buffersize": WORKERS * 4}))
        for name, options in maps:
            both = _mapping(stdlib, **options), _mapping(ours, **options)
            shape(f"warm pool, {name}", both[0], {OURS: both[1]}, ops * 2, rounds)
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
