"""Drop-in ``threading.Thread`` and ``threading.Timer`` that carry the context."""

# Version map. Which methods a class has depends on the interpreter, decided once, when the
# class body runs: a version test inside a method would run on every thread start, and it
# costs as much as the call it chooses (ContextThread.__init__'s inlined lines: a call alone
# was 1.4 us of a 180 us start+join on 3.10; ContextTimer.__init__: 250 to 500 of the 2,700
# instructions it added, callgrind). So each branch below is a whole set of methods.
#
#   ContextThread, 3.14+    start()             fills Thread._context with a copy (the native
#                                               mechanism; __init__ is the stdlib's, context=)
#                           _bootstrap_inner()  drops Thread._context once run() has ended
#   ContextThread, 3.9-3.13 __init__()          the stdlib's signature plus context=
#                           _bootstrap          a property the stdlib's start() reads once,
#                                               answered with the bootstrap bound to a copy
#                           __init_subclass__   puts _CopyBeforeBootstrap first when another
#                                               _bootstrap precedes or follows ours in the MRO
#                           _bootstrap_in_given_context, _bootstrap_shadowing_run
#                                               context= given; fail as 3.14 does if entered
#                           _adopt_context()    ContextTimer's share of __init__
#     module level, 3.9-3.13: invoke_excepthook_outside (also for _install), _CopyBeforeBootstrap
#   ContextTimer            __init__() per branch: 3.14 stores _context, before _adopt_context()
#
# Stdlib privates touched: 3.14+ Thread._context, _bootstrap_inner; before 3.14 Thread._bootstrap,
# _bootstrap_inner, _invoke_excepthook, _started (alike from 3.9 to 3.13).
# Pinned by tests/test_thread.py (test_sees_value_set_after_construction_but_not_after_start,
# test_start_without_init_raises_stdlib_error, test_second_start_raises_stdlib_error,
# test_explicit_context_already_entered_fails_like_cpython,
# test_excepthook_runs_outside_the_threads_context, test_subclass_owning_a_context_attribute_*,
# test_bootstrap_wrapped_elsewhere_*, test_subclass_overriding_bootstrap_*,
# test_bootstrap_patched_on_thread_itself_still_runs, test_instance_run_attribute_is_kept),
# tests/test_timer.py (test_signature_is_the_stdlibs_plus_context), tests/test_weakrefs.py
# (test_*_values_die_with_the_thread) and CPython's own test_threading in
# tests/test_stdlib_conformance.py. Speed: benchmarks/case_thread.py.

from __future__ import annotations

import contextvars
import functools
import sys
import threading

# Annotations only: importing typing would double this package's import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Mapping

# invoke_excepthook_outside (before 3.14) is for _install.
__all__ = ("ContextThread", "ContextTimer", "invoke_excepthook_outside")


def _refuse(context: object) -> None:
    raise TypeError(f"context must be a contextvars.Context or None, not {type(context).__name__}")


_Context = contextvars.Context
_Thread = threading.Thread
_partial = functools.partial
_copy_context = contextvars.copy_context
_context_run: Callable[..., Any] = contextvars.Context.run


if sys.version_info < (3, 14):

    def invoke_excepthook_outside(thread: ContextThread) -> None:
        # The thread's own bootstrap context is empty; its run() context is busy.
        _Context().run(thread._contextthreads_excepthook, thread)

    class _CopyBeforeBootstrap:
        """Stand in for the first ``_bootstrap`` of a subclass whose MRO puts another beside ours.

        Read by the stdlib's start(), in the starting thread: take the copy there,
        as a given context, for ContextThread's own ``_bootstrap`` to enter in the
        new thread (reached through the wrapped one's ``super()``, or wrapped
        itself), whence ``super()`` finds every ``_bootstrap`` after it.
        """

        def __init__(self, bootstrap: Any) -> None:
            self._wrapped = bootstrap

        def __get__(self, thread: ContextThread | None, owner: type | None = None) -> Any:
            if thread is None:
                return self
            context = getattr(thread, "_contextthreads_context", None)
            if context is None:
                thread._contextthreads_context = _copy_context()
            elif not isinstance(context, _Context):
                _refuse(context)
            return self._wrapped.__get__(thread, owner)


class ContextThread(threading.Thread):
    """Run ``run()`` in a new thread, in a copy of its starter's context (a drop-in Thread).

    With ``context=None`` (the default) the thread runs in a copy of the
    context of whoever calls ``start()``, taken inside ``start()``: values set
    before or after construction are seen, and nothing the thread writes leaks
    back. This is CPython 3.14's ``Thread(context=...)`` with inheritance on,
    whatever ``sys.flags.thread_inherit_context`` says. Given a
    ``contextvars.Context``, the thread runs in that very one, so its writes
    are seen there afterwards; a Context can be entered by one thread at a
    time, and one already entered elsewhere fails as CPython fails:
    ``RuntimeError: cannot enter context`` reaches ``threading.excepthook``.

    The whole of ``run()`` runs in the context, so subclasses that override it
    need not call ``super().run()``. Everything else (``join``, ``daemon``,
    names, exceptions through ``threading.excepthook``, which runs outside the
    context as on 3.14) is ``threading.Thread``'s own behaviour, thread
    safety included. The thread drops its reference to the context when
    ``run()`` ends, so the values it held do not outlive the thread.

    The constructor keeps ``threading.Thread``'s signature, ``(group=None,
    target=None, name=None, args=(), kwargs=None, *, daemon=None)``, on every
    version, and adds the keyword-only ``context=`` of CPython 3.14's.

    Args:
        group: Reserved, as in ``threading.Thread``: must be ``None``.
        target: The callable ``run()`` calls; ``None`` calls nothing.
        name: The thread's name; ``None`` gives ``Thread-N`` (with the
            target's name on 3.10+), as the stdlib does.
        args: The positional arguments for ``target``, any iterable.
        kwargs: The keyword arguments for ``target``, a mapping or ``None``.
        daemon: Whether the thread is a daemon; ``None`` takes the flag of
            the thread that constructs it.
        context: The ``contextvars.Context`` to run in; ``None`` for a copy
            of the caller of ``start()``'s context.

    Raises:
        TypeError: From ``start()``, when ``context`` is neither ``None`` nor
            a ``contextvars.Context``.
        RuntimeError: From ``start()``, when the thread was already started
            (``threading.Thread``'s own check).
    """

    # Every method here runs once per thread: each Python call, attribute and
    # allocation saved is measured in benchmarks/case_thread.py. The context
    # attributes are declared without class-level defaults: an instance
    # attribute that shadows a class attribute is stored (and, before 3.14,
    # loaded) through the interpreter's slow generic path every time.

    if sys.version_info >= (3, 14):
        # 3.14 runs run() in self._context natively, and its __init__ takes
        # context= itself: only the default, and dropping it after run(), differ.
        _context: contextvars.Context | None

        def start(self) -> None:
            try:
                context = self._context
            except AttributeError:
                # Thread.__init__ never ran: the stdlib's start() says so.
                super().start()
                return
            if context is None:
                self._context = _copy_context()
                try:
                    super().start()
                except BaseException:
                    # Not started (twice started, or no thread to be had): keep nothing.
                    self._context = None
                    raise
            elif isinstance(context, _Context):
                # Given at construction, or already started: the stdlib decides.
                super().start()
            else:
                _refuse(context)  # type: ignore[unreachable]  # callers may pass anything

        def _bootstrap_inner(self) -> None:
            try:
                super()._bootstrap_inner()  # type: ignore[misc]
            finally:
                # The stdlib keeps it for the Thread object's lifetime.
                self._context = None

    else:
        # A name of our own: threading.Thread subclasses were free to use
        # self._context before 3.14, and must keep working.
        _contextthreads_context: contextvars.Context | None
        _started: threading.Event
        _invoke_excepthook: Callable[[ContextThread], None]
        _contextthreads_excepthook: Callable[[ContextThread], None]

        def __init__(
            self,
            group: None = None,
            target: Callable[..., object] | None = None,
            name: str | None = None,
            args: Iterable[Any] = (),
            kwargs: Mapping[str, Any] | None = None,
            *,
            daemon: bool | None = None,
            context: contextvars.Context | None = None,
        ) -> None:
            if type(self) is ContextThread:
                # Nothing can sit between us and Thread: skip super(), which
                # before 3.12 builds an object and parses its arguments.
                _Thread.__init__(self, group, target, name, args, kwargs, daemon=daemon)
            else:
                super().__init__(group, target, name, args, kwargs, daemon=daemon)
            # These three lines are ContextTimer's too, inline in both: a
            # method for them cost 0.5% of a start+join on 3.9 and 3.10
            # (benchmarks/case_thread_floor.py).
            self._contextthreads_context = context
            # The whole bootstrap runs in the context (see _bootstrap); only
            # the excepthook must stay outside it, as in 3.14, whose
            # _bootstrap_inner calls self._context.run(self.run) inside the
            # try that feeds it. One shared function, and the thread's own
            # hook kept beside it: no wrapper to allocate per thread.
            self._contextthreads_excepthook = self._invoke_excepthook
            self._invoke_excepthook = invoke_excepthook_outside

        # The stdlib's start() reads self._bootstrap once, in the starting
        # thread, inside the try that undoes a failed start, and runs what it
        # gets in the new thread (alike from 3.9 to 3.13):
        # answering that read is both "copy in start()" and "run the whole
        # bootstrap in the context", with no Python frame of ours in the new
        # thread (benchmarks/case_thread.py).
        @property
        def _bootstrap(self) -> Callable[[], None]:
            try:
                context = self._contextthreads_context
            except AttributeError:
                # A subclass called threading.Thread.__init__ itself, not ours.
                context = None
            if context is None:
                # A fresh copy: no other thread can have entered it, and the
                # new thread lets go of it when its bootstrap returns. Thread's
                # _bootstrap is next in the MRO (__init_subclass__ sees to it),
                # so name it rather than pay for super() and a bound method;
                # read now, so a tracer that patched it later is still run.
                return _partial(_context_run, _copy_context(), _Thread._bootstrap, self)  # type: ignore[attr-defined]
            if isinstance(context, _Context):
                return self._bootstrap_in_given_context
            _refuse(context)  # type: ignore[unreachable]  # callers may pass anything

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            owners = [
                k
                for k in cls.__mro__
                if "_bootstrap" in vars(k)
                and not isinstance(vars(k)["_bootstrap"], _CopyBeforeBootstrap)
            ]
            # A _bootstrap defined before ours in this class's MRO (a tracer
            # may wrap it) is what start() reads: ours would run only in the
            # new thread, too late to copy the starter's context. One defined
            # between ours and Thread's would be skipped by our fast path.
            # Either way, copy in start() and let ours run as if given a context.
            if owners[:2] != [ContextThread, _Thread]:
                cls._bootstrap = _CopyBeforeBootstrap(vars(owners[0])["_bootstrap"])  # type: ignore[assignment]

        def _bootstrap_in_given_context(self) -> None:
            # No local holds the context: a failed thread's traceback keeps
            # this frame, and must not keep the context alive with it.
            try:
                _context_run(self._contextthreads_context, super()._bootstrap)  # type: ignore[misc]
            except RuntimeError:
                if self._started.is_set():
                    raise
                # The Context is entered in another thread. Fail as 3.14
                # fails: inside the bootstrap, through the excepthook.
                self._bootstrap_shadowing_run()
            finally:
                self._contextthreads_context = None

        def _bootstrap_shadowing_run(self) -> None:
            # The stdlib's _bootstrap_inner calls self.run() inside the
            # try/except that hands errors to the excepthook. Shadowing run
            # with an instance attribute for that one call reproduces 3.14's
            # self._context.run(self.run) exactly, on every version, without
            # copying private stdlib code.
            context = self._contextthreads_context
            assert context is not None  # only _bootstrap_in_given_context calls this
            own_run = self.__dict__.get("run")
            self.run = _partial(context.run, self.run)  # type: ignore[method-assign]
            # A traceback handed to the excepthook keeps this frame alive through
            # f_back; it must not keep the context alive with it.
            del context
            try:
                super()._bootstrap_inner()  # type: ignore[misc]
            finally:
                if own_run is None:
                    del self.run
                else:
                    self.run = own_run  # type: ignore[method-assign]


class ContextTimer(ContextThread, threading.Timer):
    """Call a function after a delay, in a copy of its starter's context (a drop-in Timer).

    The context rules are ``ContextThread``'s: by default a copy of the context
    of the caller of ``start()``, taken there; with ``context=`` that Context
    itself. ``cancel()`` (thread-safe), ``interval``, ``finished`` and the
    rest are ``threading.Timer``'s own.

    The constructor keeps ``threading.Timer``'s signature, ``(interval,
    function, args=None, kwargs=None)``, and adds the keyword-only
    ``context=``.

    Args:
        interval: Seconds to wait after ``start()`` before calling
            ``function``, an int or float.
        function: The callable to call unless ``cancel()`` came first.
        args: The positional arguments for ``function``, any iterable;
            ``None`` for none.
        kwargs: The keyword arguments for ``function``, a mapping; ``None``
            for none.
        context: The ``contextvars.Context`` to run in; ``None`` for a copy
            of the caller of ``start()``'s context.

    Raises:
        TypeError: From ``start()``, when ``context`` is neither ``None`` nor
            a ``contextvars.Context``.
        RuntimeError: From ``start()``, when the timer was already started.
    """

    if sys.version_info >= (3, 14):

        def __init__(
            self,
            interval: float,
            function: Callable[..., object],
            args: Iterable[Any] | None = None,
            kwargs: Mapping[str, Any] | None = None,
            *,
            context: contextvars.Context | None = None,
        ) -> None:
            # Timer.__init__ calls Thread.__init__ by name, without context=.
            # A store, not a method: a call was 250 to 500 of the 2,700
            # instructions ContextTimer added to a Timer's start+join (callgrind).
            # Hence one __init__ per branch: a version check at run time costs
            # as much as the call. tests/test_timer.py pins both signatures.
            threading.Timer.__init__(self, interval, function, args, kwargs)
            self._context = context

    else:

        def __init__(
            self,
            interval: float,
            function: Callable[..., object],
            args: Iterable[Any] | None = None,
            kwargs: Mapping[str, Any] | None = None,
            *,
            context: contextvars.Context | None = None,
        ) -> None:
            # Timer.__init__ calls Thread.__init__ by name, skipping ours:
            # its three lines, inline (see there).
            threading.Timer.__init__(self, interval, function, args, kwargs)
            self._contextthreads_context = context
            self._contextthreads_excepthook = self._invoke_excepthook
            self._invoke_excepthook = invoke_excepthook_outside
