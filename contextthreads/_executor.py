"""Drop-in ``ThreadPoolExecutor`` whose tasks run in their submitter's context."""

from __future__ import annotations

import contextvars
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator

from ._bind import in_copies_of

if TYPE_CHECKING:
    from ._typing import P, T

__all__ = ("ContextThreadPoolExecutor",)


def _bound_initializer(initializer: Any) -> Any:
    # Anything not callable goes through untouched, so the stdlib raises its own error.
    if initializer is None or not callable(initializer):
        return initializer
    return in_copies_of(contextvars.copy_context(), initializer)


class _RunOnce:
    """Run one callable in ``context``, letting go of the context as the call starts.

    Not thread-safe, and needs none: a work item runs once, on one worker.
    """

    # 3.14's WorkerContext.run keeps the submitted callable in a local, and a
    # failed task's traceback keeps that frame for as long as the future holds
    # the exception: the callable must not keep the context alive by then.
    __slots__ = ("_context",)

    def __init__(self, context: contextvars.Context) -> None:
        self._context: contextvars.Context | None = context

    def _take(self) -> contextvars.Context:
        context, self._context = self._context, None
        if context is None:
            raise RuntimeError("a submitted task can run only once")
        return context

    def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return self._take().run(fn, *args, **kwargs)


_copy_context = contextvars.copy_context
_context_run: Callable[..., Any] = contextvars.Context.run

_INHERITING = bool(getattr(sys.flags, "thread_inherit_context", 0))

if sys.version_info >= (3, 14):
    from concurrent.futures.thread import WorkerContext

    _STOCK_PREPARE_CONTEXT = ThreadPoolExecutor.__dict__["prepare_context"].__func__

    def _resolve_in_copy(
        fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[contextvars.Context, Any, tuple[Any, ...], dict[str, Any]]:
        return (_copy_context(), fn, args, kwargs)

    class _WorkerContext(WorkerContext):
        """The stdlib's worker context, running each task in the context resolved with it.

        Used by one worker thread only.
        """

        def run(self, task: Any) -> Any:
            context, fn, args, kwargs = task
            # A failed task's traceback keeps this frame: let go of the
            # context in it, so the future's exception does not pin it.
            del task
            try:
                # Spread the arguments only when there are some: building a
                # fresh argument tuple and dict for every no-argument task is
                # a measurable share of a short task's overhead.
                if kwargs:
                    return context.run(fn, *args, **kwargs)
                if args:
                    return context.run(fn, *args)
                return context.run(fn)
            except BaseException:
                del context
                raise

else:
    from concurrent.futures import thread as _stdlib_thread

    _STOCK_SUBMIT = ThreadPoolExecutor.submit


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` that runs each task in its submitter's context.

    ``submit()`` takes a fresh copy of the caller's context and runs the task
    in it: the task sees the values current at ``submit()``, and nothing it
    writes is seen by the submitter, by other tasks, or by later tasks on the
    same worker. ``map()`` runs each item in its own copy of the context
    current at the ``map()`` call, including items that ``buffersize=``
    submits later while the caller iterates. (Without ``buffersize=``, every
    item is submitted during the call, as the iterables are consumed: an
    iterable that sets a ``ContextVar`` as it is consumed is seen
    doing so by the items that follow.)

    Worker threads start in an empty context, even under
    ``-X thread_inherit_context=1``, so an idle worker keeps no submitter's
    values alive. The ``initializer`` runs once in each worker, in a fresh copy
    of the context current when the executor was constructed; ``ContextVar``
    writes it makes are not seen by tasks, which run in their submitters'
    contexts (use ``threading.local`` for per-worker state).

    Once the pool has all ``max_workers`` threads, ``submit()`` skips the
    stdlib's check for an idle one, which could start no thread by then.
    Everything else, including thread safety of ``submit``/``map``/``shutdown``,
    is ``concurrent.futures.ThreadPoolExecutor``'s own behaviour.
    """

    if sys.version_info >= (3, 14):

        def __init__(
            self,
            max_workers: int | None = None,
            thread_name_prefix: str = "",
            initializer: Callable[..., object] | None = None,
            initargs: tuple[Any, ...] = (),
            **ctxkwargs: Any,
        ) -> None:
            super().__init__(
                max_workers,
                thread_name_prefix,
                _bound_initializer(initializer),
                initargs,
                **ctxkwargs,
            )

    else:

        def __init__(
            self,
            max_workers: int | None = None,
            thread_name_prefix: str = "",
            initializer: Callable[..., object] | None = None,
            initargs: tuple[Any, ...] = (),
        ) -> None:
            super().__init__(
                max_workers, thread_name_prefix, _bound_initializer(initializer), initargs
            )

    if sys.version_info >= (3, 14):
        # No submit() of our own: the stdlib's calls this hook in the
        # submitter's thread, under its lock, and the worker runs what it
        # returns. One Python frame fewer per task than wrapping submit().

        @classmethod
        def prepare_context(
            cls, initializer: Any, initargs: tuple[Any, ...], **ctxkwargs: Any
        ) -> tuple[Callable[[], Any], Callable[..., Any]]:
            """Return the stdlib's worker hooks, resolving each task in the caller's context."""
            parent = super().prepare_context
            create_context, resolve_task = parent(initializer, initargs, **ctxkwargs)
            if getattr(parent, "__func__", None) is _STOCK_PREPARE_CONTEXT:

                def stock_create_context() -> _WorkerContext:
                    return _WorkerContext(initializer, initargs)

                return stock_create_context, _resolve_in_copy

            def resolve_in_copy(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                return resolve_task(_RunOnce(_copy_context()), (fn, *args), kwargs)

            return create_context, resolve_in_copy

    else:

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            # A class placed between us and ThreadPoolExecutor in a subclass's
            # MRO may have its own submit(), which ours must then call.
            after = cls.__mro__[cls.__mro__.index(ContextThreadPoolExecutor) + 1 :]
            owner = next(klass for klass in after if "submit" in klass.__dict__)
            cls._contextthreads_stock_submit = owner is ThreadPoolExecutor

        _contextthreads_stock_submit: ClassVar[bool] = True

        def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
            """Run ``fn(*args, **kwargs)`` in a worker, in a copy of the caller's context."""
            # Read on every call: a wrapper installed later must still run.
            if ThreadPoolExecutor.submit is not _STOCK_SUBMIT or not (
                self._contextthreads_stock_submit
            ):
                # Someone wraps the stdlib's submit() (install(), a tracer), or
                # a class after ours in the MRO has its own: go through it.
                return super().submit(_context_run, _copy_context(), fn, *args, **kwargs)
            # The stdlib's own submit() (identical from 3.9 to 3.13), building
            # the work item itself: a second Python call per task would cost
            # more than copying the context does (benchmarks/case_executor.py).
            # Before 3.14 the work item calls self.fn(*self.args) with no local
            # of its own, so a traceback does not pin the context; an unbound
            # Context.run saves allocating a bound method per task.
            with self._shutdown_lock, _stdlib_thread._global_shutdown_lock:
                if self._broken:
                    raise _stdlib_thread.BrokenThreadPool(self._broken)
                if self._shutdown:
                    raise RuntimeError("cannot schedule new futures after shutdown")
                if _stdlib_thread._shutdown:
                    raise RuntimeError("cannot schedule new futures after interpreter shutdown")
                future: Future[T] = Future()
                # Spread the arguments only when there are some, as on 3.14.
                call = (_copy_context(), fn, *args) if args else (_copy_context(), fn)
                self._work_queue.put(_stdlib_thread._WorkItem(future, _context_run, call, kwargs))
                self._adjust_thread_count()
                return future

    if sys.version_info >= (3, 14):

        def map(
            self,
            fn: Callable[..., T],
            *iterables: Iterable[Any],
            timeout: float | None = None,
            chunksize: int = 1,
            buffersize: int | None = None,
        ) -> Iterator[T]:
            """Return ``map(fn, *iterables)``, each call in a copy of the context at ``map()``."""
            if buffersize is not None:
                # Later items are submitted wherever the caller iterates.
                fn = in_copies_of(contextvars.copy_context(), fn)
            return super().map(
                fn, *iterables, timeout=timeout, chunksize=chunksize, buffersize=buffersize
            )

    # Otherwise the stdlib's map() is ours as it is: it calls submit() for
    # every item before it returns, each taking a copy of the map()-time
    # context, and wrapping fn as well would copy every context twice.

    def _adjust_thread_count(self) -> None:
        # A full pool never starts another thread: its set of threads only
        # grows until shutdown. Its idle count then decides nothing, so skip
        # the stdlib's check of it, a non-blocking Semaphore.acquire() that,
        # with no worker idle (a busy pool), waits on a Condition for zero
        # seconds: a quarter of a busy pool's time per task
        # (benchmarks/case_executor.py). Below that size, the stdlib decides.
        if len(self._threads) < self._max_workers:
            if _INHERITING:
                # Workers are created here, inside submit(), in the submitter's
                # context, which new threads inherit under this flag: hand them
                # an empty one instead. (Without the flag, threads inherit only
                # under install(), whose patch of ThreadPoolExecutor does the
                # same.)
                contextvars.Context().run(super()._adjust_thread_count)
            else:
                super()._adjust_thread_count()
