"""ContextTimer: the stdlib's Timer, plus the context of whoever calls start()."""

from __future__ import annotations

import contextvars
import inspect
import threading
from typing import Any

import pytest
from bounds import WAIT
from conftest import ExceptHookRecorder, joined

import contextthreads
from contextthreads import ContextThread, ContextTimer

#: Long enough that a cancelled timer could never fire during a test run.
NEVER = 3600.0
var: contextvars.ContextVar[str] = contextvars.ContextVar("test_timer_var")


def test_signature_is_the_stdlibs_plus_context() -> None:
    """ContextTimer.__init__ takes the stdlib's parameters, then keyword-only ``context=None``."""
    ours = inspect.signature(ContextTimer.__init__)
    ours = ours.replace(
        parameters=[p.replace(annotation=p.empty) for p in ours.parameters.values()],
        return_annotation=ours.empty,
    )
    stdlib = inspect.signature(threading.Timer.__init__)
    params = [
        *stdlib.parameters.values(),
        inspect.Parameter("context", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]
    assert ours == stdlib.replace(parameters=params)


def test_is_a_timer_and_a_context_thread() -> None:
    """ContextTimer is a threading.Timer and a ContextThread, exported as ``Timer`` too."""
    timer = ContextTimer(NEVER, lambda: None)
    assert isinstance(timer, threading.Timer)
    assert isinstance(timer, ContextThread)
    assert contextthreads.Timer is ContextTimer


def test_function_sees_values_at_start() -> None:
    """The function sees values set after construction up to start(), and not later ones."""
    seen: list[str] = []
    go = threading.Event()

    def function() -> None:
        assert go.wait(WAIT)
        seen.append(var.get("unset"))

    def body() -> None:
        var.set("at construction")
        timer = ContextTimer(0, function)
        var.set("at start")
        timer.start()
        var.set("after start")
        go.set()
        joined(timer)
        assert var.get() == "after start"

    contextvars.Context().run(body)
    assert seen == ["at start"]


def test_cancel_prevents_the_call() -> None:
    """cancel() before the interval ends means the function is never called."""
    called: list[bool] = []
    timer = ContextTimer(NEVER, lambda: called.append(True))
    timer.start()
    timer.cancel()
    joined(timer)
    assert called == []
    assert timer.finished.is_set()


def test_args_kwargs_and_attributes_are_the_stdlibs() -> None:
    """interval, function, args (default []) and kwargs (default {}) are as in threading.Timer."""
    timer = ContextTimer(1.5, print)
    assert timer.interval == 1.5
    assert timer.function is print
    assert timer.args == []
    assert timer.kwargs == {}
    got: list[Any] = []
    timer = ContextTimer(0, lambda *a, **k: got.append((a, k)), args=(1,), kwargs={"k": 2})
    joined(_started(timer))
    assert got == [((1,), {"k": 2})]


def _started(thread: threading.Thread) -> threading.Thread:
    thread.start()
    return thread


def test_explicit_context_is_the_one_run_in() -> None:
    """With context=ctx the function runs in ctx: its writes are in ctx afterwards."""
    ctx = contextvars.Context()
    ctx.run(var.set, "given")
    seen: list[str] = []

    def function() -> None:
        seen.append(var.get("unset"))
        var.set("written")

    joined(_started(ContextTimer(0, function, context=ctx)))
    assert seen == ["given"]
    assert ctx[var] == "written"


def test_context_of_wrong_type_is_a_clear_type_error() -> None:
    """context= that is not a Context or None makes start() raise TypeError, starting nothing."""
    timer = ContextTimer(0, lambda: None, context={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"context must be a contextvars\.Context or None"):
        timer.start()
    assert not timer.is_alive()
    assert timer.ident is None


def test_exception_reaches_excepthook(excepthook: ExceptHookRecorder) -> None:
    """An exception in the function reaches threading.excepthook with the timer as thread."""

    def function() -> None:
        raise OSError(var.get("unset"))

    def body() -> threading.Thread:
        var.set("ctx")
        return joined(_started(ContextTimer(0, function)))

    timer = contextvars.Context().run(body)
    [call] = excepthook.for_thread(timer)
    assert call.exc_type is OSError
    assert call.exc_value.args == ("ctx",)


def test_second_start_raises_stdlib_error() -> None:
    """A second start() raises the stdlib's RuntimeError."""
    timer = joined(_started(ContextTimer(0, lambda: None)))
    with pytest.raises(RuntimeError, match="threads can only be started once"):
        timer.start()


def test_subclass_run_override_sees_context() -> None:
    """A Timer subclass with its own run() (no super().run()) runs in the context."""
    seen: list[str] = []

    class Custom(ContextTimer):
        def run(self) -> None:
            seen.append(var.get("unset"))

    def body() -> None:
        timer = Custom(NEVER, lambda: None)
        var.set("value")
        joined(_started(timer))

    contextvars.Context().run(body)
    assert seen == ["value"]
