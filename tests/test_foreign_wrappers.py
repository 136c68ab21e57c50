"""install() and our classes beside other wrappers of Thread.start, Thread.run and submit().

The wrappers here do what Sentry's and OpenTelemetry's do, on the stdlib
alone: in ``start()``/``submit()`` they fork the starter's "scope" (a mutable
object held in a ContextVar) and enter the fork around the work, from a
wrapper of ``run`` or of the submitted callable. Each kind is written twice,
as plain ``functools.wraps`` functions and as ``wrapt`` function wrappers, and
installed before and after ``install()``, then removed in either order.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import queue
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import pytest
import stdlib_state
from bounds import WAIT

import contextthreads
from contextthreads import _install

wrapt = pytest.importorskip("wrapt", reason="wrapt does not install here")

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("foreign_var", default="unset")
SCOPE: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("foreign_scope")
IN_RUN_WRAPPER: contextvars.ContextVar[bool] = contextvars.ContextVar("in_run", default=False)


class Forking:
    """A library that forks the scope into every thread and task, installable and removable."""

    kind = "?"
    # OpenTelemetry's targets: Timer gets wrappers of its own.
    targets = (
        (threading.Thread, "start"),
        (threading.Thread, "run"),
        (threading.Timer, "start"),
        (threading.Timer, "run"),
        (ThreadPoolExecutor, "submit"),
    )

    def install(self) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        raise NotImplementedError

    # What each wrapper does, whatever its form.

    def starting(self, thread: threading.Thread) -> None:
        thread._foreign_fork = dict(SCOPE.get({}))  # type: ignore[attr-defined]

    def running(self, thread: threading.Thread, run: Callable[[], Any]) -> Any:
        fork = thread.__dict__.pop("_foreign_fork", None)
        token = SCOPE.set(fork) if fork is not None else None
        marked = IN_RUN_WRAPPER.set(True)
        try:
            return run()
        finally:
            IN_RUN_WRAPPER.reset(marked)
            if token is not None:
                SCOPE.reset(token)

    def submitting(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        fork = dict(SCOPE.get({}))

        def in_fork(*args: Any, **kwargs: Any) -> Any:
            token = SCOPE.set(fork)
            marked = IN_RUN_WRAPPER.set(True)
            try:
                return fn(*args, **kwargs)
            finally:
                IN_RUN_WRAPPER.reset(marked)
                SCOPE.reset(token)

        return in_fork


class PlainFunctions(Forking):
    """Wrappers made with functools.wraps, each saving what it replaced and putting it back."""

    kind = "functools"

    def install(self) -> None:
        self.saved = {(cls, name): cls.__dict__.get(name) for cls, name in self.targets}
        for cls, name in self.targets:
            original = getattr(cls, name)
            setattr(cls, name, functools.wraps(original)(self._wrapper(name, original)))

    def _wrapper(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        lib = self
        if name == "start":

            def start(self: threading.Thread) -> None:
                lib.starting(self)
                original(self)

            return start
        if name == "run":

            def run(self: threading.Thread) -> None:
                lib.running(self, lambda: original(self))

            return run

        def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return original(self, lib.submitting(fn), *args, **kwargs)

        return submit

    def remove(self) -> None:
        for (cls, name), original in self.saved.items():
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)


class WraptWrappers(Forking):
    """wrapt function wrappers, removed the way OpenTelemetry's unwrap() does it."""

    kind = "wrapt"

    def install(self) -> None:
        lib = self

        def start(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            lib.starting(instance)
            return wrapped(*args, **kwargs)

        def run(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return lib.running(instance, lambda: wrapped(*args, **kwargs))

        def submit(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            return wrapped(lib.submitting(args[0]), *args[1:], **kwargs)

        wrappers = {"start": start, "run": run, "submit": submit}
        for cls, name in self.targets:
            wrapt.wrap_function_wrapper(cls, name, wrappers[name])

    def remove(self) -> None:
        # Where each wrapper lives, not getattr(): that would bind Timer's, and
        # put a bound copy of Thread's back on Timer (as OpenTelemetry's does).
        proxy = getattr(wrapt, "BaseObjectProxy", None) or wrapt.ObjectProxy
        for cls, name in reversed(self.targets):
            current = vars(cls).get(name)
            if isinstance(current, proxy):
                inner = current.__wrapped__
                if any(inner is vars(base).get(name) for base in cls.__mro__[1:]):
                    delattr(cls, name)  # the wrapper shadowed an inherited one
                else:
                    setattr(cls, name, inner)


@pytest.fixture(autouse=True)
def _stdlib_put_back() -> Iterator[None]:
    """Whatever a test does, the classes are the stdlib's afterwards."""
    saved = stdlib_state.snapshot()
    try:
        yield
    finally:
        contextthreads.uninstall()
        stdlib_state.restore(saved)
        _install._leftovers.clear()


def _in_thread(cls: type[threading.Thread]) -> Callable[[Callable[[], Any]], Any]:
    def handoff(work: Callable[[], Any]) -> Any:
        results: queue.Queue[Any] = queue.Queue()
        thread = cls(target=lambda: results.put(work()))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive()
        return results.get(timeout=0)

    return handoff


def _in_timer(cls: type[threading.Timer]) -> Callable[[Callable[[], Any]], Any]:
    def handoff(work: Callable[[], Any]) -> Any:
        results: queue.Queue[Any] = queue.Queue()
        timer = cls(0, lambda: results.put(work()))
        timer.start()
        timer.join(WAIT)
        assert not timer.is_alive()
        return results.get(timeout=0)

    return handoff


def _submit(cls: type[ThreadPoolExecutor]) -> Callable[[Callable[[], Any]], Any]:
    def handoff(work: Callable[[], Any]) -> Any:
        with cls(max_workers=1) as pool:
            return pool.submit(work).result(timeout=WAIT)

    return handoff


def _work(label: str) -> Callable[[], tuple[str, dict[str, str], bool]]:
    def work() -> tuple[str, dict[str, str], bool]:
        seen = VAR.get(), dict(SCOPE.get({})), IN_RUN_WRAPPER.get()
        VAR.set(f"written by {label}")
        SCOPE.get({})[f"set_in_{label}"] = "yes"
        return seen

    return work


def _probe(handoff: Callable[[Callable[[], Any]], Any]) -> list[str]:
    def starter() -> list[str]:
        VAR.set("before")
        scope = {"set_before": "yes"}
        SCOPE.set(scope)
        problems = []
        for label in ("A", "B"):
            var, seen_scope, in_wrapper = handoff(_work(label))
            if var != "before":
                problems.append(f"task {label} saw {var!r}")
            if seen_scope != {"set_before": "yes"}:
                problems.append(f"task {label} saw the scope {seen_scope}")
            if not in_wrapper:
                problems.append(f"task {label} ran outside the wrapper's setup")
        if scope != {"set_before": "yes"} or VAR.get() != "before":
            problems.append(f"the starter's scope became {scope}, its value {VAR.get()!r}")
        return problems

    return contextvars.Context().run(starter)


def _plain_thread_sees() -> str:
    VAR.set("starter's")
    return _in_thread(threading.Thread)(VAR.get)  # type: ignore[no-any-return]


OURS = {
    "ContextThread": _in_thread(contextthreads.ContextThread),
    "ContextTimer": _in_timer(contextthreads.ContextTimer),
    "ContextThreadPoolExecutor.submit": _submit(contextthreads.ThreadPoolExecutor),
}
UNDER_INSTALL = {
    "Thread": _in_thread(threading.Thread),
    "Timer": _in_timer(threading.Timer),
    "ThreadPoolExecutor.submit": _submit(ThreadPoolExecutor),
}
KINDS = [PlainFunctions, WraptWrappers]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_our_classes_run_the_wrappers_inside_the_copy(kind: type[Forking]) -> None:
    """Without install(), our classes run a foreign wrapper's setup inside the copied context.

    So the work sees the wrapper's fork of the starter's scope, not the scope
    itself, and what it adds to it stays in the fork.
    """
    library = kind()
    library.install()
    assert {name: _probe(handoff) for name, handoff in OURS.items()} == {name: [] for name in OURS}
    library.remove()


@pytest.mark.parametrize("wrapper_first", [True, False], ids=["wrapper-first", "install-first"])
@pytest.mark.parametrize("uninstall_first", [True, False], ids=["uninstall-first", "remove-first"])
@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_install_beside_wrappers_in_any_order(
    kind: type[Forking],
    wrapper_first: bool,
    uninstall_first: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Set up in either order, plain and our threads and tasks run the wrapper inside the copy.

    Removed in either order, the classes are the stdlib's again. A plain
    function wrapper put over ours and still there at uninstall() keeps ours
    inside it, passing calls through, with a warning; once its owner puts back
    what it wrapped (ours), ours takes itself out at its next call. One put
    under ours whose owner puts back the stdlib's function over ours has
    dropped ours: uninstall() warns of that too.
    """
    library = kind()
    pristine = stdlib_state.snapshot()
    steps = [library.install, contextthreads.install]
    for step in steps if wrapper_first else reversed(steps):
        step()
    checks = {**OURS, **UNDER_INSTALL}
    assert {name: _probe(handoff) for name, handoff in checks.items()} == {
        name: [] for name in checks
    }
    with caplog.at_level(logging.WARNING, logger="contextthreads"):
        for step in [contextthreads.uninstall, library.remove][:: 1 if uninstall_first else -1]:
            step()
    # A plain wrapper over ours, still there at uninstall(), keeps ours inside
    # it; one under ours that its owner removes first puts back the stdlib's
    # function over ours. Either way the warning says so.
    buried = kind is PlainFunctions and not wrapper_first and uninstall_first
    dropped = kind is PlainFunctions and wrapper_first and not uninstall_first
    # (Ours on Timer, whose start() was the wrapper's own copy, goes the same way.)
    warned = {"threading.Thread.start"} if buried else set()
    if dropped:
        warned = {"threading.Thread.start", "threading.Timer.start"}
    messages = [record.getMessage() for record in caplog.records]
    assert {
        where
        for where in ("threading.Thread.start", "threading.Timer.start")
        for message in messages
        if f"{where} was replaced after contextthreads.install()" in message
    } == warned
    assert len(messages) == len(warned), messages
    # A start() and a submit(): a patch of ours back in the class takes itself out.
    inherits = bool(getattr(sys.flags, "thread_inherit_context", 0))
    assert contextvars.Context().run(_plain_thread_sees) == ("starter's" if inherits else "unset")
    assert _submit(ThreadPoolExecutor)(VAR.get) == "unset"
    assert stdlib_state.differences(pristine, stdlib_state.snapshot()) == []
    assert len(_install._leftovers) == (2 if dropped else 0)


class MadeWithoutOurInit(contextthreads.ThreadPoolExecutor):
    """A subclass of ours whose __init__ calls the stdlib's directly."""

    def __init__(self, max_workers: int) -> None:
        ThreadPoolExecutor.__init__(self, max_workers)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_pool_made_without_our_init_still_carries_the_context(kind: type[Forking]) -> None:
    """Under a wrapper of submit(), a pool of ours built by the stdlib's __init__ still carries.

    Such a pool lacks our work queue, so the copy goes through the wrappers.
    """
    library = kind()
    library.install()

    def starter() -> str:
        VAR.set("before")
        with MadeWithoutOurInit(1) as pool:
            return pool.submit(VAR.get).result(timeout=WAIT)

    assert contextvars.Context().run(starter) == "before"
    library.remove()
