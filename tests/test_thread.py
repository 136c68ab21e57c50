"""ContextThread: the stdlib's Thread, plus the context of whoever calls start()."""

from __future__ import annotations

import contextvars
import inspect
import sys
import threading
from typing import Any

import pytest
from bounds import WAIT
from conftest import ExceptHookRecorder, joined

import contextthreads
from contextthreads import ContextThread
from contextthreads._install import threads_inherit_context

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_thread_var")


def without_annotations(signature: inspect.Signature) -> inspect.Signature:
    """Return ``signature`` with names, kinds and defaults only."""
    return signature.replace(
        parameters=[p.replace(annotation=p.empty) for p in signature.parameters.values()],
        return_annotation=signature.empty,
    )


def test_signature_is_the_stdlibs_plus_context() -> None:
    """ContextThread.__init__ takes the stdlib's parameters, then keyword-only ``context=None``."""
    ours = without_annotations(inspect.signature(ContextThread.__init__))
    stdlib = inspect.signature(threading.Thread.__init__)
    params = [p for p in stdlib.parameters.values() if p.name != "context"]
    params.append(inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, default=None))
    assert ours == stdlib.replace(parameters=params)
    if sys.version_info >= (3, 14):
        assert ours == stdlib


def test_is_a_thread_and_aliased() -> None:
    """ContextThread is a threading.Thread subclass, exported as ``Thread`` too."""
    assert issubclass(ContextThread, threading.Thread)
    assert contextthreads.Thread is ContextThread
    assert isinstance(ContextThread(target=lambda: None), threading.Thread)


def test_sees_value_set_after_construction_but_not_after_start() -> None:
    """The context is copied inside start(): later writes by the caller are not seen."""
    go = threading.Event()
    seen: list[str] = []

    def target() -> None:
        assert go.wait(WAIT)
        seen.append(var.get("unset"))

    def body() -> None:
        thread = ContextThread(target=target)
        var.set("at start")
        thread.start()
        var.set("after start")
        go.set()
        joined(thread)

    contextvars.Context().run(body)
    assert seen == ["at start"]


def test_default_ignores_the_inherit_flag() -> None:
    """With context=None the thread copies the starter's context, whatever the 3.14 flag says.

    A plain threading.Thread, for comparison, sees the value only when the
    interpreter has thread_inherit_context on (or install() patched threading).
    """
    seen: list[str] = []
    plain: list[str] = []

    def body() -> None:
        var.set("starter")
        joined(_started(ContextThread(target=lambda: seen.append(var.get("unset")))))
        joined(_started(threading.Thread(target=lambda: plain.append(var.get("unset")))))

    contextvars.Context().run(body)
    assert seen == ["starter"]
    assert plain == (["starter"] if threads_inherit_context() else ["unset"])


def test_writes_do_not_leak_back() -> None:
    """What the thread sets stays in its own copy; the starter's value is unchanged."""

    def body() -> None:
        var.set("parent")
        thread = ContextThread(target=var.set, args=("child",))
        thread.start()
        joined(thread)
        assert var.get() == "parent"

    contextvars.Context().run(body)


def test_explicit_context_is_the_one_run_in() -> None:
    """With context=ctx the thread runs in ctx itself: its writes are visible in ctx afterwards."""
    ctx = contextvars.Context()
    ctx.run(var.set, "given")
    seen: list[str] = []

    def target() -> None:
        seen.append(var.get("unset"))
        var.set("written by thread")

    var.set("caller")  # not the given context: must not be seen
    thread = ContextThread(target=target, context=ctx)
    thread.start()
    joined(thread)
    assert seen == ["given"]
    assert ctx[var] == "written by thread"


def test_explicit_context_already_entered_fails_like_cpython(
    excepthook: ExceptHookRecorder,
) -> None:
    """A Context entered elsewhere cannot be entered: RuntimeError reaches the excepthook.

    start() itself returns normally (it does not hang), as with CPython 3.14's
    Thread(context=...).
    """
    ran: list[bool] = []
    ctx = contextvars.Context()

    def start_inside() -> threading.Thread:
        thread = ContextThread(target=lambda: ran.append(True), context=ctx)
        thread.start()
        return joined(thread)

    thread = ctx.run(start_inside)
    assert ran == []
    [call] = excepthook.for_thread(thread)
    assert call.exc_type is RuntimeError
    assert "cannot enter context" in str(call.exc_value)


def test_exception_reaches_excepthook(excepthook: ExceptHookRecorder) -> None:
    """An exception in the target reaches threading.excepthook with its type, value and thread."""
    error = ValueError("boom")

    def target() -> None:
        raise error

    thread = joined(_started(ContextThread(target=target, name="failing")))
    [call] = excepthook.for_thread(thread)
    assert call.exc_type is ValueError
    assert call.exc_value is error
    assert call.thread is thread
    assert call.exc_traceback is not None


def test_exception_in_run_override_reaches_excepthook(excepthook: ExceptHookRecorder) -> None:
    """A failing run() override reaches the excepthook too, in the thread's context."""

    class Failing(ContextThread):
        def run(self) -> None:
            raise KeyError(var.get("unset"))

    def body() -> threading.Thread:
        var.set("ctx value")
        return joined(_started(Failing()))

    thread = contextvars.Context().run(body)
    [call] = excepthook.for_thread(thread)
    assert call.exc_type is KeyError
    assert call.exc_value.args == ("ctx value",)


def _started(thread: threading.Thread) -> threading.Thread:
    thread.start()
    return thread


def test_second_start_raises_stdlib_error() -> None:
    """A second start() raises the stdlib's RuntimeError, with its message."""
    ours = joined(_started(ContextThread(target=lambda: None)))
    stdlib = joined(_started(threading.Thread(target=lambda: None)))
    with pytest.raises(RuntimeError) as stdlib_error:
        stdlib.start()
    with pytest.raises(RuntimeError, match="once") as our_error:
        ours.start()
    assert str(our_error.value) == str(stdlib_error.value)


def test_start_without_init_raises_stdlib_error() -> None:
    """A subclass that skips __init__ gets the stdlib's RuntimeError from start()."""

    class NoInit(ContextThread):
        def __init__(self) -> None:
            pass

    class StdlibNoInit(threading.Thread):
        def __init__(self) -> None:
            pass

    with pytest.raises(RuntimeError) as stdlib_error:
        StdlibNoInit().start()
    with pytest.raises(RuntimeError, match="__init__") as our_error:
        NoInit().start()
    assert str(our_error.value) == str(stdlib_error.value)


@pytest.mark.parametrize("bad", [{}, "ctx", 0, contextvars.copy_context])
def test_context_of_wrong_type_is_a_clear_type_error(bad: Any) -> None:
    """context= that is not a Context or None makes start() raise TypeError naming the type.

    The error comes in the caller's thread, before any thread is started, and
    leaves the thread registered nowhere (not even as starting).
    """
    ran = threading.Event()
    thread = ContextThread(target=ran.set, context=bad)
    with pytest.raises(TypeError, match=r"context must be a contextvars\.Context or None, not"):
        thread.start()
    assert not thread.is_alive()
    assert thread.ident is None
    assert thread not in threading.enumerate()
    assert not ran.is_set()


def test_run_override_without_super_sees_context() -> None:
    """A subclass whose run() never calls super().run() still runs in the context."""
    seen: list[str] = []

    class Custom(ContextThread):
        def run(self) -> None:
            seen.append(var.get("unset"))

    def body() -> None:
        thread = Custom()
        var.set("value")
        thread.start()
        joined(thread)

    contextvars.Context().run(body)
    assert seen == ["value"]


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="3.14's own Thread uses self._context")
def test_subclass_owning_a_context_attribute_still_works() -> None:
    """Before 3.14, a subclass free to use ``self._context`` for itself is not disturbed."""
    seen: list[str] = []

    class Custom(ContextThread):
        def __init__(self) -> None:
            super().__init__()
            self._context = "mine"  # type: ignore[assignment, unused-ignore]

        def run(self) -> None:
            seen.append(f"{self._context}:{var.get('unset')}")

    def body() -> None:
        var.set("v")
        joined(_started(Custom()))

    contextvars.Context().run(body)
    assert seen == ["mine:v"]


def test_instance_run_attribute_is_kept() -> None:
    """A ``run`` set on the instance is what runs, and it is still there after the thread ends."""
    seen: list[str] = []

    def own_run() -> None:
        seen.append(var.get("unset"))

    thread = ContextThread()
    thread.run = own_run  # type: ignore[method-assign]

    def body() -> None:
        var.set("v")
        joined(_started(thread))

    contextvars.Context().run(body)
    assert seen == ["v"]
    assert thread.run is own_run


def test_name_daemon_args_kwargs_pass_through() -> None:
    """name, daemon, args and kwargs behave as the stdlib's."""
    got: list[Any] = []
    thread = ContextThread(
        None, lambda *a, **k: got.append((a, k)), "named", (1, 2), {"k": 3}, daemon=True
    )
    assert thread.name == "named"
    assert thread.daemon is True
    joined(_started(thread))
    assert got == [((1, 2), {"k": 3})]
    assert ContextThread(target=lambda: None).daemon is threading.current_thread().daemon


def test_group_must_be_none_as_in_stdlib() -> None:
    """A non-None group fails the stdlib's own check."""
    with pytest.raises(AssertionError):
        ContextThread(group=object())  # type: ignore[arg-type]


def test_target_kwargs_named_context_reach_the_target() -> None:
    """A target keyword argument called ``context`` goes to the target, not to us."""
    got: list[Any] = []
    thread = ContextThread(target=lambda context: got.append(context), kwargs={"context": 5})
    joined(_started(thread))
    assert got == [5]


def test_is_alive_ident_and_repr_are_stdlib() -> None:
    """ident, native_id, is_alive() and repr() behave as the stdlib's."""
    release = threading.Event()
    thread = ContextThread(target=release.wait, args=(WAIT,))
    assert "initial" in repr(thread)
    thread.start()
    assert thread.is_alive()
    assert thread.ident is not None
    assert "started" in repr(thread)
    release.set()
    joined(thread)
    assert "stopped" in repr(thread)


def test_thread_started_from_a_thread_gets_that_threads_context() -> None:
    """A ContextThread started inside another carries the inner thread's values."""
    seen: list[str] = []

    def outer() -> None:
        var.set("outer")
        joined(_started(ContextThread(target=lambda: seen.append(var.get("unset")))))

    def body() -> None:
        var.set("main")
        joined(_started(ContextThread(target=outer)))
        assert var.get() == "main"

    contextvars.Context().run(body)
    assert seen == ["outer"]


def test_subclass_calling_stdlib_init_directly_gets_starter_context() -> None:
    """A subclass that calls threading.Thread.__init__ by name still runs in the starter's copy."""
    seen: list[str] = []

    class Legacy(ContextThread):
        def __init__(self) -> None:
            threading.Thread.__init__(self, target=lambda: seen.append(var.get("unset")))

    def body() -> None:
        thread = Legacy()
        var.set("starter")
        joined(_started(thread))

    contextvars.Context().run(body)
    assert seen == ["starter"]


def test_subclass_overriding_start_keeps_semantics() -> None:
    """A subclass whose start() does work and then calls super().start() still copies at start."""
    seen: list[str] = []

    class Wrapped(ContextThread):
        def start(self) -> None:
            var.set("set inside start")
            super().start()

    def body() -> None:
        joined(_started(Wrapped(target=lambda: seen.append(var.get("unset")))))

    contextvars.Context().run(body)
    assert seen == ["set inside start"]


class _TracingBootstrap(threading.Thread):
    """A tracer's way in: wrap the stdlib's private per-thread bootstrap."""

    def _bootstrap(self) -> None:
        self.traced = True
        super()._bootstrap()  # type: ignore[misc]


def _traced(tracer_first: bool) -> type[ContextThread]:
    bases = (
        (_TracingBootstrap, ContextThread) if tracer_first else (ContextThread, _TracingBootstrap)
    )
    return type("Traced", bases, {})


@pytest.mark.parametrize("explicit", [False, True])
@pytest.mark.parametrize("tracer_first", [False, True])
def test_bootstrap_wrapped_elsewhere_in_the_mro_still_runs(
    tracer_first: bool, explicit: bool
) -> None:
    """A class beside ContextThread in the MRO that wraps _bootstrap is still called.

    Whichever comes first, the tracer's wrapper runs in the new thread, and
    run() still sees the values current at start(), or the given context's.
    """
    seen: list[str] = []
    given = contextvars.Context()
    given.run(var.set, "given")

    def body() -> Any:
        var.set("starter")
        thread = _traced(tracer_first)(
            target=lambda: seen.append(var.get("unset")), context=given if explicit else None
        )
        return joined(_started(thread))

    thread = contextvars.Context().run(body)
    assert thread.traced
    assert seen == ["given" if explicit else "starter"]


@pytest.mark.parametrize("tracer_first", [False, True])
def test_bootstrap_wrapped_elsewhere_still_refuses_a_bad_context(tracer_first: bool) -> None:
    """With a _bootstrap wrapped beside ours, a wrong-type context= still fails in start()."""
    thread = _traced(tracer_first)(target=lambda: None, context="not a context")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="context must be"):
        thread.start()
    assert thread not in threading.enumerate()


def test_subclass_overriding_bootstrap_gets_starter_context() -> None:
    """A ContextThread subclass that overrides _bootstrap and calls super() keeps the semantics."""
    seen: list[str] = []

    class Own(ContextThread):
        def _bootstrap(self) -> None:
            var.set("written by the override")  # in the new thread, outside run()'s context
            super()._bootstrap()  # type: ignore[misc, unused-ignore]

    def body() -> None:
        thread = Own(target=lambda: seen.append(var.get("unset")))
        var.set("starter")
        joined(_started(thread))

    contextvars.Context().run(body)
    assert seen == ["starter"]


def test_init_beside_ours_in_the_mro_still_runs() -> None:
    """A cooperative __init__ between ours and Thread's in the MRO runs, and gets the arguments."""

    class Tagged(threading.Thread):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.tag = "tagged"

    class Both(ContextThread, Tagged):
        pass

    seen: list[str] = []

    def body() -> Both:
        var.set("starter")
        thread = Both(target=lambda: seen.append(var.get("unset")), name="both", daemon=True)
        joined(_started(thread))
        return thread

    thread = contextvars.Context().run(body)
    assert (thread.tag, thread.name, thread.daemon) == ("tagged", "both", True)
    assert seen == ["starter"]


def test_bootstrap_patched_on_thread_itself_still_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracer that patches threading.Thread._bootstrap after import is still run by ours."""
    original = threading.Thread._bootstrap  # type: ignore[attr-defined]
    traced: list[threading.Thread] = []
    seen: list[str] = []

    def tracing(self: threading.Thread) -> None:
        traced.append(self)
        original(self)

    monkeypatch.setattr(threading.Thread, "_bootstrap", tracing)

    def body() -> threading.Thread:
        var.set("starter")
        return joined(_started(ContextThread(target=lambda: seen.append(var.get("unset")))))

    thread = contextvars.Context().run(body)
    assert traced == [thread]
    assert seen == ["starter"]


@pytest.mark.parametrize("explicit", [False, True], ids=["copied", "explicit-context"])
def test_excepthook_runs_outside_the_threads_context(explicit: bool) -> None:
    """threading.excepthook runs outside the context run() ran in, as on CPython 3.14.

    3.14's bootstrap calls ``self._context.run(self.run)`` inside the try that
    feeds the excepthook, so the hook sees the thread's own empty context, not
    the values the thread ran with; ours does the same on every version.
    """
    seen: list[str] = []
    saved = threading.excepthook
    threading.excepthook = lambda args: seen.append(var.get("unset"))

    def body() -> None:
        var.set("run context")
        context = contextvars.copy_context() if explicit else None
        joined(_started(ContextThread(target=lambda: 1 / 0, context=context)))

    try:
        contextvars.Context().run(body)
    finally:
        threading.excepthook = saved
    assert seen == ["unset"]
