"""Drop-in ``ThreadPoolExecutor`` whose tasks run in their submitter's context."""

# Version map. 3.14 gave ThreadPoolExecutor a hook, prepare_context(), that the stdlib's
# submit() calls in the submitter's thread; before it there is none, and submit() itself is
# ours. Each branch is a whole set of methods, chosen when the class body runs: the per-task
# path has room for no version test and no second Python call (a wrapping submit() cost more
# than copying the context, benchmarks/case_executor.py).
#
#   ContextThreadPoolExecutor, 3.14+
#     __init__(..., **ctxkwargs)  the stdlib's signature; binds the initializer
#     prepare_context()           stock pools: _WorkerContext (below) and _resolve_in_copy;
#                                 a subclass's own hook: its tasks wrapped in _RunOnce
#     map()                       buffersize=: later items submitted in the map()-time copy
#   ContextThreadPoolExecutor, 3.9-3.13
#     __init__()                  also puts our _WorkQueue in self._work_queue
#     submit()                    the stdlib's own submit() inlined, or, when someone wraps it,
#                                 theirs with _WorkQueue entering the copy beneath them
#     __init_subclass__           whether a class between ours and the stdlib's has a submit()
#   Every version: _adjust_thread_count(), which skips the idle check of a full pool and starts
#   workers in an empty context when threads inherit (_INHERITING).
#   Module level: 3.14+ _WorkerContext, _resolve_in_copy, _STOCK_PREPARE_CONTEXT;
#   before 3.14 _WorkQueue, run_captured (also for _install), _STOCK_SUBMIT, _stdlib_own.
#
# Stdlib privates touched: 3.14+ concurrent.futures.thread.WorkerContext and its run(task);
# before 3.14 concurrent.futures.thread._WorkItem (fn/args), _shutdown, _global_shutdown_lock,
# and the pool's _work_queue, _shutdown_lock, _broken, _shutdown; always the pool's _threads,
# _max_workers, _adjust_thread_count.
# Pinned by tests/test_executor.py (test_signatures_equal_the_stdlibs,
# test_wrapper_of_stdlib_submit_is_still_called, test_submit_of_a_class_between_ours_*,
# test_submit_after_interpreter_shutdown_raises_stdlib_error, test_map_buffersize_*,
# test_a_full_pool_starts_no_more_threads_*, test_a_pool_below_its_size_starts_a_worker_*,
# test_own_prepare_context_*), tests/test_foreign_wrappers.py
# (test_pool_made_without_our_init_still_carries_the_context), tests/test_weakrefs.py
# (test_failed_task_values_die_with_the_task, test_idle_worker_created_by_a_submit_pins_nothing,
# test_future_holds_no_context) and CPython's own test_concurrent_futures in
# tests/test_stdlib_conformance.py.

from __future__ import annotations

import contextvars
import functools
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator

from ._bind import context_run, in_copies_of
from ._patching import wrapper_chain

if TYPE_CHECKING:
    from ._typing import P, T

# map_in and (before 3.14) run_captured are for _install.
__all__ = ("ContextThreadPoolExecutor", "map_in", "run_captured")


def _bound_initializer(initializer: Any) -> Any:
    # Anything not callable goes through untouched, so the stdlib raises its own error.
    if initializer is None or not callable(initializer):
        return initializer
    return in_copies_of(contextvars.copy_context(), initializer)


def map_in(
    context: contextvars.Context, map_call: Callable[..., Iterator[T]], /, *args: Any, **kwargs: Any
) -> Iterator[T]:
    """Call ``map_call(*args, **kwargs)``, and step the iterator it returns, all in ``context``.

    For ``map(buffersize=...)``, which submits later items while the caller
    iterates: every submit() then takes its copy of the ``map()``-time context,
    and ``fn`` goes to the pool as it is, so that a wrapper of submit() still
    runs inside the copy (wrapping ``fn`` in a context of its own would enter
    that context inside the wrapper). The iterator is for one consumer at a time.
    """
    return _step_in(context, context.run(map_call, *args, **kwargs))


def _step_in(context: contextvars.Context, results: Iterator[T]) -> Iterator[T]:
    # A generator, like the stdlib's: close() works, and dropping ours drops
    # theirs, which cancels the calls it has not yet started.
    while True:
        try:
            result = context.run(next, results)
        except StopIteration:
            return
        yield result


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
_partial = functools.partial

_INHERITING = bool(getattr(sys.flags, "thread_inherit_context", 0))

if sys.version_info >= (3, 14):
    from concurrent.futures.thread import WorkerContext

    _STOCK_PREPARE_CONTEXT = ThreadPoolExecutor.__dict__["prepare_context"].__func__

    def _resolve_in_copy(
        fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[contextvars.Context, Any, tuple[Any, ...], dict[str, Any] | None]:
        # An empty keyword dict is let go: a queued task then keeps as many
        # objects as the stdlib's, the copy included (docs/explanation/performance.md).
        return (_copy_context(), fn, args, kwargs or None)

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
    import queue
    from concurrent.futures import thread as _stdlib_thread

    def _stdlib_own(function: Any) -> Any:
        # Beneath the wrappers that say what they wrap (functools.wraps, wrapt):
        # a wrapper installed before this import (Sentry's, by sentry_sdk.init())
        # must not be taken for the stdlib's submit(), or our copy of it would
        # skip the wrapper. None if some wrapper hides what it wraps.
        function = wrapper_chain(function)[-1]
        own = getattr(function, "__globals__", None) is vars(_stdlib_thread)
        return function if own else None

    _STOCK_SUBMIT = _stdlib_own(ThreadPoolExecutor.__dict__["submit"])
    _WorkItem = _stdlib_thread._WorkItem
    _queue_put = queue.SimpleQueue.put

    #: What install()'s work items call in place of ``Context.run``, so that our
    #: queue can tell the context install() captured from one the caller chose.
    run_captured = _partial(context_run)

    class _ContextWorkItem:
        """What our own submit() queues: a work item like the stdlib's, running in its context.

        Runs once, on one worker; needs no locking. The worker needs only
        ``future`` and ``run()``. In a burst every queued item lives through
        the collections it spans, and each object it keeps brings the next
        full collection closer (docs/explanation/performance.md), so it keeps no
        more than the stdlib's ``_WorkItem``: slots (no instance dict before
        3.11), the context beside the call rather than in a tuple with it, and
        no empty keyword dict, which makes room for the context itself.
        """

        __slots__ = ("args", "context", "fn", "future", "kwargs")

        def __init__(
            self,
            future: Future[Any],
            fn: Callable[..., Any],
            args: tuple[Any, ...],
            kwargs: dict[str, Any] | None,
            context: contextvars.Context,
        ) -> None:
            self.future = future
            self.fn = fn
            self.args = args
            self.kwargs = kwargs
            self.context = context

        def run(self) -> None:
            if not self.future.set_running_or_notify_cancel():
                return
            try:
                # No local holds the context: a failed task's traceback keeps
                # this frame, for as long as its future holds the exception.
                # Arguments are spread only when there are some: an empty
                # *args costs a no-op task about 100 ns (3.9 and 3.12).
                if self.kwargs is not None:
                    # context_run: on PyPy, Context.run's own parameter names
                    # would take keywords named self or callable.
                    result = context_run(self.context, self.fn, *self.args, **self.kwargs)
                elif self.args:
                    result = self.context.run(self.fn, *self.args)
                else:
                    result = self.context.run(self.fn)
            except BaseException as exc:
                self.future.set_exception(exc)
                # Nor this item, as in the stdlib's: no cycle through the traceback.
                self = None  # type: ignore[assignment]
            else:
                self.future.set_result(result)

    class _WorkQueue(queue.SimpleQueue):  # type: ignore[type-arg]
        """Our pool's work queue: what the stdlib's own submit() puts here runs in a copy.

        The stdlib's submit() builds its work item beneath every wrapper of it
        (Sentry's, OpenTelemetry's), from the callable they made, and puts it
        here from the submitter's thread, holding the pool's lock. Entering the
        copy there, in the work item itself, puts their per-task setup inside
        it: what they set up is what the task sees, and what the task writes
        stays in the task. Our own submit() puts its ready-made items through
        ``SimpleQueue.put`` and never comes here.
        """

        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            if type(item) is _WorkItem:
                args: Any = item.args  # a tuple, whatever typeshed says
                if item.fn is run_captured:
                    # install() took its copy already, maybe of only= variables:
                    # our pools carry the whole context.
                    item.args = (_copy_context(), *args[1:])
                else:
                    item.args = (_copy_context(), item.fn, *args)
                    item.fn = context_run
            _queue_put(self, item, block, timeout)


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """Run each task on a pool of threads in its submitter's context (a drop-in ThreadPoolExecutor).

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

    The constructor keeps ``ThreadPoolExecutor``'s signature on each version,
    ``(max_workers=None, thread_name_prefix="", initializer=None,
    initargs=())``, and on 3.14+ the keyword arguments its
    ``prepare_context`` hook takes; ``submit(fn, /, *args, **kwargs)`` and
    ``map(fn, *iterables, timeout=None, chunksize=1)`` (3.14+:
    ``buffersize=None``) keep theirs.

    Args:
        max_workers: The most threads the pool starts, a positive int;
            ``None`` for the stdlib's default, ``min(32, cpu_count + 4)``.
        thread_name_prefix: The prefix of the worker threads' names.
        initializer: A callable each worker calls once, before its first
            task, in a copy of the context current at construction; ``None``
            for none.
        initargs: The positional arguments for ``initializer``, a tuple.
        **ctxkwargs: On 3.14+, what the stdlib passes on to
            ``prepare_context`` (for a subclass's own hook).

    Raises:
        ValueError: When ``max_workers`` is 0 or less.
        TypeError: When ``initializer`` is neither ``None`` nor callable.
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
            self._work_queue: queue.SimpleQueue[Any] = _WorkQueue()

    if sys.version_info >= (3, 14):
        # No submit() of our own: the stdlib's calls this hook in the
        # submitter's thread, under its lock, and the worker runs what it
        # returns. One Python frame fewer per task than wrapping submit().

        @classmethod
        def prepare_context(
            cls, initializer: Any, initargs: tuple[Any, ...], **ctxkwargs: Any
        ) -> tuple[Callable[[], Any], Callable[..., Any]]:
            """Return the stdlib's worker hooks, resolving each task in the caller's context.

            CPython 3.14's hook, called by the constructor; the stdlib's
            ``submit()`` calls the resolver it returns in the submitting
            thread, so the copy is taken there.

            Args:
                initializer: The pool's initializer, already bound to the
                    construction-time context.
                initargs: The positional arguments for ``initializer``.
                **ctxkwargs: The constructor's extra keyword arguments.

            Returns:
                The stdlib's pair: a factory for a worker's context object,
                and a function that turns ``(fn, args, kwargs)`` into a task.
            """
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
            """Run ``fn(*args, **kwargs)`` in a worker, in a copy of the caller's context.

            Thread-safe, as the stdlib's. The copy is taken here, in the
            calling thread; the call sees the values current now, and what
            it writes stays in its copy.

            Args:
                fn: The callable to run.
                *args: Its positional arguments.
                **kwargs: Its keyword arguments.

            Returns:
                A ``concurrent.futures.Future`` for the call's result.

            Raises:
                RuntimeError: After ``shutdown()``, or once the interpreter is
                    shutting down.
                concurrent.futures.thread.BrokenThreadPool: When an
                    initializer failed.
            """
            # Read on every call: a wrapper installed later must still run.
            if ThreadPoolExecutor.submit is not _STOCK_SUBMIT or not (
                self._contextthreads_stock_submit
            ):
                # Someone wraps the stdlib's submit() (a tracer, Sentry), or a
                # class after ours in the MRO has its own: go through it, and
                # let our queue enter the copy around whatever reaches it.
                if type(self._work_queue) is _WorkQueue:
                    return super().submit(fn, *args, **kwargs)
                # A subclass made the pool without our __init__: carry the
                # copy through the wrappers, inside them.
                return super().submit(context_run, _copy_context(), fn, *args, **kwargs)
            # The stdlib's own submit() (identical from 3.9 to 3.13), building
            # a work item of ours itself: a second Python call per task would
            # cost more than copying the context does (benchmarks/case_executor.py).
            with self._shutdown_lock, _stdlib_thread._global_shutdown_lock:
                if self._broken:
                    raise _stdlib_thread.BrokenThreadPool(self._broken)
                if self._shutdown:
                    raise RuntimeError("cannot schedule new futures after shutdown")
                if _stdlib_thread._shutdown:
                    raise RuntimeError("cannot schedule new futures after interpreter shutdown")
                future: Future[T] = Future()
                item = _ContextWorkItem(future, fn, args, kwargs or None, _copy_context())
                _queue_put(self._work_queue, item)
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
            """Return ``map(fn, *iterables)``, each call in a copy of the context at ``map()``.

            Thread-safe, as the stdlib's. Items that ``buffersize=`` submits
            later, while the caller iterates, run in copies of the
            ``map()``-time context too, not of the iterating thread's.

            Args:
                fn: The callable to call with one item of each iterable.
                *iterables: The iterables to take the arguments from.
                timeout: Seconds the iterator waits for each result, counted
                    from the ``map()`` call; ``None`` waits for ever.
                chunksize: Ignored by thread pools, as in the stdlib.
                buffersize: How many calls may be submitted ahead of the
                    results taken; ``None`` submits every item now.

            Returns:
                An iterator of the results, in order.

            Raises:
                TimeoutError: From the iterator, when a result is not ready
                    in time.
                TypeError: When ``buffersize`` is neither ``None`` nor an int.
                ValueError: When ``buffersize`` is less than 1.
            """
            if buffersize is None:
                return super().map(fn, *iterables, timeout=timeout, chunksize=chunksize)
            # Later items are submitted wherever the caller iterates.
            return map_in(
                _copy_context(),
                super().map,
                fn,
                *iterables,
                timeout=timeout,
                chunksize=chunksize,
                buffersize=buffersize,
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
