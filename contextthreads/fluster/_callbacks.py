"""Done-callbacks of a pool's futures, run on a thread of their own.

``Future.set_result()`` runs a future's done-callbacks at once, in the thread
that sets it. In a pool that thread is a dispatcher, whose next task's clock
is already running: a slow callback would count against a healthy worker.
So a pool's futures hand their callbacks to one ``CallbackThread`` instead,
which runs them in order, each in a copy of the context it was added in (as
asyncio's futures do). Futures nobody adds a callback to cost nothing more.
"""

from __future__ import annotations

import collections
import contextvars
import functools
import logging
import threading
from concurrent.futures import Future
from typing import Any, Callable

__all__ = ("CallbackThread", "PoolFuture")

# Where concurrent.futures reports a callback that raised; ours report the same way.
_futures_logger = logging.getLogger("concurrent.futures")

Callback = Callable[["Future[Any]"], object]


class CallbackThread:
    """Run done-callbacks one at a time, on a daemon thread started when the first one comes.

    The thread ends after ``idle`` seconds without work and starts again when
    more comes. Thread-safe.
    """

    idle = 5.0

    def __init__(self, name: str) -> None:
        self._name = name
        self._ready = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[Callback, Future[Any], contextvars.Context]] = (
            collections.deque()
        )
        self._serving = False
        self._running = 0

    def future(self) -> Future[Any]:
        """Return a new future whose done-callbacks run here."""
        return PoolFuture(self)

    def call_soon(self, fn: Callback, future: Future[Any], *, context: contextvars.Context) -> None:
        """Queue ``fn(future)``, to run in ``context``."""
        with self._ready:
            self._queue.append((fn, future, context))
            if self._serving:
                self._ready.notify()
                return
            self._serving = True
        threading.Thread(target=self._serve, name=self._name, daemon=True).start()

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until no callback is queued or running."""
        with self._ready:
            return self._ready.wait_for(lambda: not (self._queue or self._running), timeout)

    def _serve(self) -> None:
        while True:
            with self._ready:
                self._running = 0
                self._ready.notify_all()
                while not self._queue:
                    if not self._ready.wait(self.idle) and not self._queue:
                        self._serving = False
                        return
                fn, future, context = self._queue.popleft()
                self._running = 1
            try:
                context.run(fn, future)
            except BaseException:  # even SystemExit: the next callbacks must still run
                _futures_logger.exception("exception calling callback for %r", future)
            del fn, future, context


class PoolFuture(Future[Any]):
    """A ``concurrent.futures.Future`` whose done-callbacks run on a ``CallbackThread``.

    Added to a future that is already done, a callback runs at once in the
    caller's thread, as with any future.
    """

    def __init__(self, callbacks: CallbackThread) -> None:
        super().__init__()
        self._callbacks = callbacks

    def add_done_callback(self, fn: Callback) -> None:
        """Call ``fn(future)`` on the pool's callback thread once the future is done."""
        if self.done():
            super().add_done_callback(fn)
            return
        later = functools.partial(self._callbacks.call_soon, fn, context=contextvars.copy_context())
        super().add_done_callback(later)
