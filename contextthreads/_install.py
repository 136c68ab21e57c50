"""Make every stdlib thread and thread pool carry context, process-wide, on request.

Other libraries patch ``Thread.start``/``run`` and ``ThreadPoolExecutor.submit``
too (Sentry, OpenTelemetry, APM agents), in whatever order a service sets them
up and tears them down. Two rules keep us out of their way:

- The copied context is entered where the stdlib itself starts the work, beneath
  every wrapper: the thread's bootstrap, and the work item (before 3.14) or task
  resolver (3.14+) that the stdlib's own ``submit()`` builds. Whatever a wrapper
  sets up around ``run`` or the submitted callable (Sentry's scope fork,
  OpenTelemetry's attach) then runs inside the copy, so it is what the work sees,
  and what the work writes stays in it, whichever was installed first.
- Only ``Thread.start`` is also wrapped by others. ``_patching`` puts ours beneath
  their wrapt proxies and takes it out from beneath them; one that a plain
  function wrapper captured is left there, passing calls through, and leaves by
  itself once it is back in the class (see ``_settle``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ._bind import context_run
from ._executor import ContextThreadPoolExecutor, map_in
from ._patching import (
    MISSING,
    Patch,
    Switch,
    apply,
    call_as_attribute,
    holder_of,
    insertion_point,
    leftover_note,
    remove,
    subclasses,
    wrapper_chain,
)

__all__ = ("install", "installed", "is_installed", "threads_inherit_context", "uninstall")

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    Vars: TypeAlias = frozenset[contextvars.ContextVar[Any]]

    from ._patching import Make

_partial = functools.partial


_lock = threading.Lock()
_explicit = False  # install() called and not yet undone by uninstall()
_blocks = 0  # installed() blocks currently open
_applied: list[Patch] = []
_switch: Switch | None = None  # the patches in effect; None when not installed
# Patches an uninstall could not reach, by replacement; they pass calls through.
_leftovers: dict[Any, Patch] = {}
# Read without the lock by the patched functions: written only under it.
_only: Vars | None = None


def _new_lock_after_fork() -> None:
    # A fork taken while another thread held the lock would leave it held forever.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _set_all(pairs: list[tuple[contextvars.ContextVar[Any], Any]]) -> None:
    for var, value in pairs:
        var.set(value)


def _capture() -> contextvars.Context:
    """Return the context a new thread or task gets: a copy of ours, or its ``only=`` part."""
    only = _only
    current = contextvars.copy_context()
    if only is None:
        return current
    # Vars the caller never set stay unset, so the child sees their defaults
    # (or LookupError), exactly as in a fresh thread.
    pairs = [(var, current[var]) for var in only if var in current]
    context = contextvars.Context()
    if pairs:
        context.run(_set_all, pairs)
    return context


def _sweep() -> None:
    # Under the lock: take out every left-behind patch that is within reach again.
    for replacement, patch in list(_leftovers.items()):
        if remove(patch):
            del _leftovers[replacement]


def _settle(replacement: object) -> None:
    """Called by a patch that is off: take it out if it is one an uninstall left behind.

    A wrapper installed after ours captured ours as its original; when its owner
    removes it by putting that original back, ours is in the class again. Never
    waits for the lock: whoever holds it may be the caller's own thread.
    """
    patch = _leftovers.get(replacement)
    if patch is None or holder_of(patch, patch.cls) is None:
        return  # still inside someone's wrapper: nothing to do yet
    if _lock.acquire(blocking=False):
        try:
            if _leftovers.get(replacement) is patch and remove(patch):
                del _leftovers[replacement]
        finally:
            _lock.release()


# --------------------------------------------------------------------------
# The patches


if sys.version_info >= (3, 14):

    def _patched_start(target: Any, switch: Switch) -> Callable[..., None]:
        call = call_as_attribute(target)

        # The native mechanism: _bootstrap_inner runs self.run() in
        # self._context, inside every wrapper of run, and filling it in
        # beforehand is what -X thread_inherit_context=1 does. ContextThread
        # and Thread(context=...) have filled it already.
        def start(self: threading.Thread) -> None:
            if switch.on:
                if (
                    self._initialized  # type: ignore[attr-defined]
                    and not self._started.is_set()  # type: ignore[attr-defined]
                    and self._context is None  # type: ignore[attr-defined]
                ):
                    self._context = _capture()  # type: ignore[attr-defined]
            else:
                _settle(start)
            call(self)

        return functools.wraps(target)(start)

else:
    from ._thread import invoke_excepthook_outside

    def _patched_start(target: Any, switch: Switch) -> Callable[..., None]:
        call = call_as_attribute(target)

        # The stdlib's start() reads self._bootstrap once, and runs it in the
        # new thread: an instance attribute that answers that read with the
        # bootstrap bound to a copy (as ContextThread's property does) runs
        # the whole thread in it, beneath every wrapper of start() and run(),
        # with no bootstrap code copied. Gone again when start() returns.
        def start(self: threading.Thread) -> None:
            own = self.__dict__
            if (
                not switch.on
                or not self._initialized  # type: ignore[attr-defined]
                or self._started.is_set()  # type: ignore[attr-defined]
                # ContextThread, or a start() of ours further out: theirs already.
                or own.get("_invoke_excepthook") is invoke_excepthook_outside
            ):
                if not switch.on:
                    _settle(start)
                call(self)
                return
            saved = own.get("_bootstrap", MISSING)
            hook = own["_invoke_excepthook"]
            own["_bootstrap"] = _partial(context_run, _capture(), self._bootstrap)  # type: ignore[attr-defined]
            # The excepthook stays outside the context, as in 3.14, whose
            # _bootstrap_inner runs only self.run() in it.
            own["_contextthreads_excepthook"] = hook
            own["_invoke_excepthook"] = invoke_excepthook_outside
            try:
                call(self)
            except BaseException:
                # Not started: as it was, so a retried start() begins afresh.
                own["_invoke_excepthook"] = hook
                raise
            finally:
                # Read once, by now; the thread object must not pin the context.
                if saved is MISSING:
                    del own["_bootstrap"]
                else:
                    own["_bootstrap"] = saved

        return functools.wraps(target)(start)


def _patched_adjust_thread_count(target: Any, switch: Switch) -> Callable[..., None]:
    call = call_as_attribute(target)

    # Workers are created inside submit(), in the submitter's context; now
    # that threads inherit, give them an empty one so an idle worker pins
    # nobody's values. ContextThreadPoolExecutor relies on this too. A full
    # pool creates none, and every submit() takes that path.
    def _adjust_thread_count(self: ThreadPoolExecutor) -> None:
        if switch.on:
            if len(self._threads) < self._max_workers:
                contextvars.Context().run(call, self)
                return
        else:
            _settle(_adjust_thread_count)
        call(self)

    return functools.wraps(target)(_adjust_thread_count)


if sys.version_info >= (3, 14):
    from concurrent.futures.thread import WorkerContext

    # Pools that propagate by themselves, and one a Context cannot cross into.
    _SELF_MANAGED: tuple[type, ...] = (ContextThreadPoolExecutor,)
    from concurrent.futures import InterpreterPoolExecutor

    _SELF_MANAGED += (InterpreterPoolExecutor,)

    #: The code of the stock resolver, ``(fn, args, kwargs)``, which every
    #: ThreadPoolExecutor without a prepare_context() of its own holds.
    _STOCK_RESOLVE = WorkerContext.prepare(None, ())[1].__code__  # type: ignore[call-overload]

    def _resolve_captured(
        fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, tuple[Any, ...], dict[str, Any]]:
        # The stock resolver's task, calling fn in a copy through Context.run.
        return (context_run, (_capture(), fn, *args), kwargs)

    class _ResolveInCopy:
        """``ThreadPoolExecutor._resolve_work_item_task`` while ``install()`` is in effect.

        Each pool keeps its resolver in its ``__dict__``, where this data
        descriptor finds it. The stdlib's submit() reads it beneath every
        wrapper of submit(), in the submitter's thread, and calls it with the
        callable those wrappers made: a stock resolver is answered with one
        whose task runs that callable in a copy. Pools with resolvers of their
        own (ours, InterpreterPoolExecutor, custom ``prepare_context()``) keep them.
        """

        _key = "_resolve_work_item_task"

        def __init__(self, target: Any, switch: Switch) -> None:
            self._switch = switch

        def __get__(self, pool: Any, owner: type | None = None) -> Any:
            if pool is None:
                return self
            try:
                resolve = pool.__dict__[self._key]
            except KeyError:
                raise AttributeError(self._key) from None
            if not self._switch.on:
                _settle(self)
            elif getattr(resolve, "__code__", None) is _STOCK_RESOLVE:
                return _resolve_captured
            return resolve

        def __set__(self, pool: Any, value: Any) -> None:
            pool.__dict__[self._key] = value

        def __delete__(self, pool: Any) -> None:
            del pool.__dict__[self._key]

    def _patched_map(target: Any, switch: Switch) -> Callable[..., Any]:
        call = call_as_attribute(target)

        # With buffersize=, later items are submitted wherever the caller
        # iterates: submit them all in a copy of the map()-time context.
        def map(
            self: ThreadPoolExecutor, fn: Callable[..., Any], /, *iterables: Any, **kwargs: Any
        ) -> Any:
            if switch.on:
                if kwargs.get("buffersize") is not None and not isinstance(self, _SELF_MANAGED):
                    return map_in(_capture(), call, self, fn, *iterables, **kwargs)
            else:
                _settle(map)
            return call(self, fn, *iterables, **kwargs)

        return functools.wraps(target)(map)

    _POOL_TARGETS: tuple[tuple[type, str, Make], ...] = (
        (ThreadPoolExecutor, "_resolve_work_item_task", _ResolveInCopy),
        # Inherited from Executor; set on ThreadPoolExecutor, deleted again on uninstall.
        (ThreadPoolExecutor, "map", _patched_map),
    )

else:
    from concurrent.futures import thread as _stdlib_thread

    from ._executor import run_captured

    def _patched_work_item_init(target: Any, switch: Switch) -> Callable[..., None]:
        call = call_as_attribute(target)

        # The stdlib's submit() builds its work item beneath every wrapper of
        # submit(), in the submitter's thread, from the callable they made:
        # make the item call it in a copy. Our pool's items call Context.run
        # already. (Without a Python frame in the worker: a failed task's
        # traceback must not keep the copy alive.) Also map(), whose submits
        # all happen during the call before 3.14.
        def __init__(
            self: Any, future: Any, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> None:
            if switch.on:
                if fn is not context_run and fn is not run_captured:
                    args = (_capture(), fn, *args)
                    fn = run_captured
            else:
                _settle(__init__)
            call(self, future, fn, args, kwargs)

        return functools.wraps(target)(__init__)

    _POOL_TARGETS = ((_stdlib_thread._WorkItem, "__init__", _patched_work_item_init),)


def _start_copies() -> list[type]:
    """Return the Thread subclasses whose own start() wraps the stdlib's beside ``Thread.start``.

    Such a start() (OpenTelemetry's and other wrappers on Timer) never reaches
    ``Thread.start``, so each needs a patch of its own, unless it wraps the
    proxy that ours goes beneath on ``Thread``.
    """
    stock = wrapper_chain(threading.Thread.__dict__["start"])[-1]
    reached = set()
    copies = []
    for cls in [threading.Thread, *subclasses(threading.Thread)]:  # bases first
        chain = wrapper_chain(vars(cls).get("start"))
        if chain[-1] is stock and not any(id(value) in reached for value in chain):
            holder, _ = insertion_point(cls, "start")
            if holder is not None:
                reached.add(id(holder))
            if cls is not threading.Thread:
                copies.append(cls)
    return copies


def _targets() -> list[tuple[type, str, Make]]:
    # Copies first: taken out after Thread's, each finds what it would
    # inherit is the original again, and deletes its own.
    targets: list[tuple[type, str, Make]] = [
        (cls, "start", _patched_start) for cls in _start_copies()
    ]
    targets.append((threading.Thread, "start", _patched_start))
    targets.append((ThreadPoolExecutor, "_adjust_thread_count", _patched_adjust_thread_count))
    targets.extend(_POOL_TARGETS)
    return targets


# --------------------------------------------------------------------------
# The public switch


def _checked_only(only: object) -> Vars | None:
    if only is None:
        return None
    if isinstance(only, contextvars.ContextVar) or not isinstance(only, Iterable):
        raise TypeError(f"only= takes an iterable of ContextVar objects, not {type(only).__name__}")
    chosen: list[contextvars.ContextVar[Any]] = []
    for var in only:
        if not isinstance(var, contextvars.ContextVar):
            raise TypeError(f"only= takes ContextVar objects, got {type(var).__name__}")
        chosen.append(var)
    return frozenset(chosen)


def _describe_only(only: Vars | None) -> str:
    if only is None:
        return "all variables"
    return "only=[" + ", ".join(sorted(var.name for var in only)) + "]"


def _activate(only: Vars | None) -> None:
    global _switch, _only
    if _switch is not None:
        if only != _only:
            raise RuntimeError(
                f"contextthreads is already installed with {_describe_only(_only)}; "
                f"cannot install it with {_describe_only(only)} until it is uninstalled"
            )
        return
    _sweep()
    _only = only
    switch = Switch()
    for cls, name, make in _targets():
        _applied.append(apply(cls, name, make, switch))
    _switch = switch


def _deactivate() -> list[str]:
    """Take the patches out; return a warning for each one that had to stay."""
    global _switch
    if _switch is None:
        return []
    # Turned off first: a patch we cannot remove below becomes a pass-through.
    _switch.on = False
    _switch = None
    notes = []
    for patch in reversed(_applied):
        if not remove(patch):
            _leftovers[patch.replacement] = patch
            notes.append(leftover_note(patch))
    _applied.clear()
    # _only is left as it was: a start() that saw the switch on just before
    # this still captures with a setting that was in effect.
    return notes


def _warn(notes: list[str]) -> None:
    # Outside the lock: a logging handler may start a thread (Sentry's does).
    for note in notes:
        _log.warning("%s", note)


def install(*, only: Iterable[contextvars.ContextVar[Any]] | None = None) -> None:
    """Make every thread and thread-pool task in the process run in a copy of its starter's context.

    From now on ``threading.Thread.start()`` (so ``Timer``, every subclass,
    and names bound before the call, such as ``from threading import
    Thread``) runs the thread's ``run()`` in a copy of the context of the
    caller of ``start()``, as CPython 3.14's ``-X thread_inherit_context=1``
    does; a ``Thread(context=...)`` given on 3.14 is left as it is. Each
    ``concurrent.futures.ThreadPoolExecutor.submit()`` runs its task in a
    fresh copy of the submitter's context; ``map()`` submits every item during
    the call (with 3.14's ``buffersize=``, later items in copies of the
    ``map()``-time context). Pool worker threads start in an empty context, so
    an idle worker keeps no submitter's values alive; as a consequence
    ``ContextVar`` writes made by a pool's ``initializer`` are not seen by its
    tasks. Nothing a thread or task writes to a ``ContextVar`` reaches its
    starter. ``ContextThread``, ``ContextThreadPoolExecutor`` and 3.14's
    ``InterpreterPoolExecutor`` are left to their own rules.

    Wrappers other libraries put around ``start()``, ``run()`` or ``submit()``
    (Sentry's, OpenTelemetry's), installed before or after this, run inside
    the copy: what they set up around the work is what it sees.

    With ``only=[var, ...]`` just those variables are carried, with the
    starter's values if it had set them; every other variable is unset in the
    thread or task, as in a fresh thread: ``get()`` returns its default or
    raises ``LookupError``.

    The classes are not replaced: their functions are patched in place, and
    ``uninstall()`` puts the very same function objects back. Calling
    ``install()`` again with the same ``only`` does nothing; with a different
    one it raises ``RuntimeError`` (call ``uninstall()`` first). Thread-safe.

    Args:
        only: The ``contextvars.ContextVar`` objects to carry, any iterable of
            them; ``None`` (the default) carries every variable.

    Raises:
        TypeError: When ``only`` is not an iterable of ``ContextVar`` objects
            (a single ``ContextVar`` included).
        RuntimeError: When ``install()`` or an ``installed()`` block is
            already in effect with a different ``only``.
    """
    chosen = _checked_only(only)
    global _explicit
    with _lock:
        _activate(chosen)
        _explicit = True


def uninstall() -> None:
    """Undo ``install()``, putting back the exact original functions.

    Does nothing if ``install()`` is not in effect. While an ``installed()``
    block is open the patch stays until the last such block exits. Threads
    already started and tasks already submitted keep the context they were
    given. If another library wrapped a patched function after ``install()``
    with a wrapper we cannot see into, that wrapper is left in place, ours
    inside it passes calls straight through, and a warning on the
    ``contextthreads._install`` logger says so. Thread-safe.
    """
    global _explicit
    with _lock:
        _explicit = False
        notes = _deactivate() if _blocks == 0 else []
        _sweep()
    _warn(notes)


def is_installed() -> bool:
    """Return whether ``install()`` or an ``installed()`` block is in effect right now.

    True from ``install()`` until the ``uninstall()`` that takes the patch out,
    and while any ``installed()`` block is open. Thread-safe; the answer may be
    stale by the time another thread installs or uninstalls.

    Returns:
        ``True`` while the patch is in place, else ``False``.
    """
    return _switch is not None


def threads_inherit_context() -> bool:
    """Return whether a plain ``threading.Thread`` would start in a copy of its starter's context.

    True while ``install()`` (or an ``installed()`` block) is in effect, and on
    3.14+ under ``-X thread_inherit_context=1`` (the default on free-threaded
    builds). Thread-safe, with ``is_installed()``'s staleness.
    """
    return _switch is not None or bool(getattr(sys.flags, "thread_inherit_context", False))


@contextlib.contextmanager
def installed(*, only: Iterable[contextvars.ContextVar[Any]] | None = None) -> Iterator[None]:
    """Keep ``install(only=...)`` in effect for the duration of a ``with`` block.

    Blocks are counted, not nested like a stack: the patch is in place while
    any ``installed()`` block is open in any thread or ``install()`` is in
    effect, and is removed when the last of those ends, so blocks may open and
    close in any order from any threads. A block inside ``install()`` leaves it
    in effect on exit. ``only`` must match the one already in effect, else
    ``RuntimeError``. Thread-safe.

    Args:
        only: The ``contextvars.ContextVar`` objects to carry, any iterable of
            them; ``None`` (the default) carries every variable.

    Yields:
        ``None``, once the patch is in place.

    Raises:
        TypeError: When ``only`` is not an iterable of ``ContextVar`` objects.
        RuntimeError: When ``install()`` or another block is in effect with a
            different ``only``.
    """
    chosen = _checked_only(only)
    global _blocks
    with _lock:
        _activate(chosen)
        _blocks += 1
    try:
        yield
    finally:
        with _lock:
            _blocks -= 1
            notes = _deactivate() if _blocks == 0 and not _explicit else []
        _warn(notes)
