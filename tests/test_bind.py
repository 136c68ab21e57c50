"""bind(): a callable that runs in a fresh copy of the context captured at bind()."""

from __future__ import annotations

import contextvars
import functools
import threading
from typing import Any

import pytest
from bounds import WAIT

from contextthreads import bind

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_bind_var")


def fresh(fn: Any) -> Any:
    """Run ``fn`` in an empty Context."""
    return contextvars.Context().run(fn)


def documented(a: int, b: int = 2, *, c: int = 3) -> tuple[int, int, int, str]:
    """Return the arguments and the bound value."""
    return a, b, c, var.get("unset")


documented.extra = "kept"  # type: ignore[attr-defined]


def test_keeps_wraps_metadata() -> None:
    """The bound callable keeps fn's functools.wraps metadata, __wrapped__ and __dict__."""
    bound = bind(documented)
    for attribute in functools.WRAPPER_ASSIGNMENTS:
        assert getattr(bound, attribute) == getattr(documented, attribute)
    assert bound.__wrapped__ is documented  # type: ignore[attr-defined]
    assert bound.extra == "kept"  # type: ignore[attr-defined]


def test_passes_arguments_and_returns_result() -> None:
    """Positional and keyword arguments reach fn, even ones named like bind's internals."""

    def fn(*args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    kwargs = {"fn": 1, "context": 2, "callable": 3, "self": 4}
    assert bind(fn)(0, **kwargs) == ((0,), kwargs)
    assert bind(documented)(1, c=9)[:3] == (1, 2, 9)


@pytest.mark.parametrize("bad", [None, 5, "text", object()])
def test_rejects_non_callables(bad: Any) -> None:
    """bind() of something not callable raises TypeError naming its type."""
    with pytest.raises(TypeError, match=rf"callable, not {type(bad).__name__}"):
        bind(bad)


def test_sees_values_at_bind_not_at_call() -> None:
    """Calls see the values current when bind() was called, wherever they are called from."""

    def body() -> None:
        var.set("at bind")
        bound = bind(lambda: var.get("unset"))
        var.set("at call")
        assert bound() == "at bind"

    fresh(body)


def test_calls_are_isolated_from_each_other_and_the_caller() -> None:
    """Each call starts from the bound values; nothing a call writes is seen later."""

    def fn(value: str) -> str:
        seen = var.get("unset")
        var.set(value)
        return seen

    def body() -> None:
        var.set("bound")
        bound = bind(fn)
        assert bound("first") == "bound"
        assert bound("second") == "bound"
        assert var.get() == "bound"

    fresh(body)


def test_exceptions_propagate_unchanged() -> None:
    """An exception from fn reaches the caller unchanged."""
    error = LookupError("x")

    def fn() -> None:
        raise error

    with pytest.raises(LookupError) as info:
        bind(fn)()
    assert info.value is error


def test_concurrent_calls_are_isolated() -> None:
    """Calls running at the same time in several threads each see only their own writes."""
    count = 5
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def fn(i: int) -> tuple[str, str]:
        before = var.get("unset")
        var.set(f"call {i}")
        barrier.wait(WAIT)  # every call has written before any reads back
        return before, var.get()

    def body() -> Any:
        var.set("bound")
        return bind(fn)

    bound = fresh(body)

    def call(i: int) -> None:
        results[i] = bound(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    assert results == [("bound", f"call {i}") for i in range(count)]


def test_reentrant_call_from_inside_itself() -> None:
    """A bound callable may call itself recursively: each call gets its own copy."""

    def fn(depth: int) -> list[str]:
        seen = [var.get("unset")]
        var.set(f"depth {depth}")
        if depth < 2:
            seen += bound(depth + 1)
        return seen

    def body() -> Any:
        var.set("bound")
        return bind(fn)

    bound = fresh(body)
    assert bound(0) == ["bound", "bound", "bound"]


def test_binds_methods_and_builtins() -> None:
    """Bound methods, builtins and callable objects can be bound."""
    assert bind(len)([1, 2]) == 2
    assert bind("a-b".split)("-") == ["a", "b"]

    class Callable:
        def __call__(self) -> str:
            return var.get("unset")

    def body() -> Any:
        var.set("v")
        return bind(Callable())

    assert fresh(body)() == "v"
