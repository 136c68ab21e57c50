"""Make every stdlib thread and thread pool carry context, process-wide, on request."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple

from . import _inherit
from ._bind import in_copies_of
from ._executor import ContextThreadPoolExecutor
from ._thread import ContextThread

__all__ = ("install", "installed", "uninstall")

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    Vars: TypeAlias = frozenset[contextvars.ContextVar[Any]]

# Pools the patch leaves alone: ours propagate by themselves, and a Context
# cannot cross into a subinterpreter.
_SELF_MANAGED: tuple[type, ...] = (ContextThreadPoolExecutor,)
if sys.version_info >= (3, 14):
    from concurrent.futures import InterpreterPoolExecutor

    _SELF_MANAGED += (InterpreterPoolExecutor,)


class _Patch(NamedTuple):
    cls: type
    name: str
    own: bool  # the attribute was in cls.__dict__, not inherited
    original: Any
    replacement: Any


_lock = threading.Lock()
_explicit = False  # install() called and not yet undone by uninstall()
_blocks = 0  # installed() blocks currently open
_applied: list[_Patch] = []
# Read without the lock by the patched functions on every call: plain globals,
# written only under the lock.
_enabled = False
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


class _RunInContext:
    """Stand in for a thread's ``run`` until it returns, running the real one in a Context."""

    __slots__ = ("_bound", "_context", "_own_run", "_thread_dict")

    def __init__(
        self, thread_dict: dict[str, Any], bound: Callable[[], object], context: contextvars.Context
    ) -> None:
        self._thread_dict = thread_dict
        self._own_run = thread_dict.get("run", _MISSING)
        self._bound = bound
        self._context: contextvars.Context | None = context

    def restore(self) -> None:
        if self._own_run is _MISSING:
            self._thread_dict.pop("run", None)
        else:
            self._thread_dict["run"] = self._own_run
        # Drop the values as soon as run() ends, not when the Thread object dies.
        self._context = None

    def __call__(self) -> None:
        context = self._context
        if context is None:  # called again after run() ended: nothing left to enter
            self._bound()
            return
        try:
            context.run(self._bound)
        finally:
            self.restore()


_MISSING: Any = object()


def _patched_start(original: Callable[[threading.Thread], None]) -> Callable[..., None]:
    if sys.version_info >= (3, 14):
        # The native mechanism: start() runs run() in self._context, and
        # filling it in beforehand is what -X thread_inherit_context=1 does.
        # ContextThread and Thread(context=...) have filled it already.
        def start(self: threading.Thread) -> None:
            if (
                _enabled
                and self._initialized  # type: ignore[attr-defined]
                and not self._started.is_set()  # type: ignore[attr-defined]
                and self._context is None  # type: ignore[attr-defined]
            ):
                self._context = _capture()  # type: ignore[attr-defined]
            original(self)

    else:
        # The stdlib's _bootstrap_inner calls self.run() inside the try/except
        # that feeds threading.excepthook; an instance attribute shadowing run
        # for the thread's lifetime makes exactly that call run in the
        # context, whatever class the thread is, with no bootstrap code copied
        # and nothing for uninstall() to race with once start() returns.
        def start(self: threading.Thread) -> None:
            if (
                not _enabled
                or isinstance(self, ContextThread)
                or not self._initialized  # type: ignore[attr-defined]
                or self._started.is_set()  # type: ignore[attr-defined]
                or isinstance(self.__dict__.get("run"), _RunInContext)
            ):
                original(self)
                return
            runner = _RunInContext(self.__dict__, self.run, _capture())
            self.__dict__["run"] = runner
            try:
                original(self)
            except Exception:
                # The stdlib raises only before the new thread exists; put
                # run back so a retried start() begins afresh.
                runner.restore()
                raise

    return functools.wraps(original)(start)


def _patched_submit(original: Callable[..., Any]) -> Callable[..., Any]:
    def submit(
        self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> Any:
        if not _enabled or isinstance(self, _SELF_MANAGED):
            return original(self, fn, *args, **kwargs)
        return original(self, _capture().run, fn, *args, **kwargs)

    return functools.wraps(original)(submit)


def _patched_map(original: Callable[..., Any]) -> Callable[..., Any]:
    # Captured once here, not per submit(): with 3.14's buffersize= the later
    # submits happen wherever the caller iterates.
    def map(
        self: ThreadPoolExecutor, fn: Callable[..., Any], /, *iterables: Any, **kwargs: Any
    ) -> Any:
        if not _enabled or isinstance(self, _SELF_MANAGED):
            return original(self, fn, *iterables, **kwargs)
        return original(self, in_copies_of(_capture(), fn), *iterables, **kwargs)

    return functools.wraps(original)(map)


def _patched_adjust_thread_count(original: Callable[..., None]) -> Callable[..., None]:
    # Workers are created inside submit(), in the submitter's context; now
    # that threads inherit, give them an empty one so an idle worker pins
    # nobody's values. ContextThreadPoolExecutor relies on this too. A full
    # pool creates none, and every submit() takes that path.
    def _adjust_thread_count(self: ThreadPoolExecutor) -> None:
        if _enabled and len(self._threads) < self._max_workers:
            contextvars.Context().run(original, self)
        else:
            original(self)

    return functools.wraps(original)(_adjust_thread_count)


_TARGETS: tuple[tuple[type, str, Callable[[Any], Any]], ...] = (
    (threading.Thread, "start", _patched_start),
    (ThreadPoolExecutor, "submit", _patched_submit),
    # Inherited from Executor; set on ThreadPoolExecutor, deleted again on uninstall.
    (ThreadPoolExecutor, "map", _patched_map),
    (ThreadPoolExecutor, "_adjust_thread_count", _patched_adjust_thread_count),
)


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


def _describe(only: Vars | None) -> str:
    if only is None:
        return "all variables"
    return "only=[" + ", ".join(sorted(var.name for var in only)) + "]"


def _activate(only: Vars | None) -> None:
    global _enabled, _only
    if _enabled:
        if only != _only:
            raise RuntimeError(
                f"contextthreads is already installed with {_describe(_only)}; "
                f"cannot install it with {_describe(only)} until it is uninstalled"
            )
        return
    _only = only
    for cls, name, make in _TARGETS:
        own = name in cls.__dict__
        original = cls.__dict__[name] if own else getattr(cls, name)
        replacement = make(original)
        setattr(cls, name, replacement)
        _applied.append(_Patch(cls, name, own, original, replacement))
    _inherit.patched = True
    _enabled = True


def _deactivate() -> None:
    global _enabled
    if not _enabled:
        return
    # Turned off first: a patch we cannot remove below becomes a pass-through.
    _enabled = False
    _inherit.patched = False
    for patch in reversed(_applied):
        if patch.cls.__dict__.get(patch.name) is not patch.replacement:
            _log.warning(
                "%s.%s was replaced by someone else after contextthreads.install(); "
                "leaving their replacement in place (ours now does nothing)",
                patch.cls.__qualname__,
                patch.name,
            )
            continue
        if patch.own:
            setattr(patch.cls, patch.name, patch.original)
        else:
            delattr(patch.cls, patch.name)
    _applied.clear()
    # _only is left as it was: a start() that saw _enabled just before this
    # still captures with a setting that was in effect.


def install(*, only: Iterable[contextvars.ContextVar[Any]] | None = None) -> None:
    """Make every thread and thread-pool task in the process run in a copy of its starter's context.

    From now on ``threading.Thread.start()`` (so ``Timer``, every subclass,
    and names bound before the call, such as ``from threading import
    Thread``) runs the thread's ``run()`` in a copy of the context of the
    caller of ``start()``, as CPython 3.14's ``-X thread_inherit_context=1``
    does; a ``Thread(context=...)`` given on 3.14 is left as it is. Each
    ``concurrent.futures.ThreadPoolExecutor.submit()`` runs its task in a
    fresh copy of the submitter's context, and ``map()`` takes the context
    once, at the ``map()`` call, running each item in its own copy. Pool
    worker threads start in an empty context, so an idle worker keeps no
    submitter's values alive; as a consequence ``ContextVar`` writes made by a
    pool's ``initializer`` are not seen by its tasks. Nothing a thread or task
    writes reaches its starter. ``ContextThread``,
    ``ContextThreadPoolExecutor`` and 3.14's ``InterpreterPoolExecutor`` are
    left to their own rules.

    With ``only=[var, ...]`` just those variables are carried, with the
    starter's values if it had set them; every other variable is unset in the
    thread or task, as in a fresh thread: ``get()`` returns its default or
    raises ``LookupError``.

    The classes are not replaced: their functions are patched in place, and
    ``uninstall()`` puts the very same function objects back. Calling
    ``install()`` again with the same ``only`` does nothing; with a different
    one it raises ``RuntimeError`` (call ``uninstall()`` first). Thread-safe.
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
    given. Thread-safe.
    """
    global _explicit
    with _lock:
        _explicit = False
        if _blocks == 0:
            _deactivate()


@contextlib.contextmanager
def installed(*, only: Iterable[contextvars.ContextVar[Any]] | None = None) -> Iterator[None]:
    """Keep ``install(only=...)`` in effect for the duration of a ``with`` block.

    Blocks are counted, not nested like a stack: the patch is in place while
    any ``installed()`` block is open in any thread or ``install()`` is in
    effect, and is removed when the last of those ends, so blocks may open and
    close in any order from any threads. A block inside ``install()`` leaves it
    in effect on exit. ``only`` must match the one already in effect, else
    ``RuntimeError``. Thread-safe.
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
            if _blocks == 0 and not _explicit:
                _deactivate()
