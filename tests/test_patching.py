"""_patching: a patch beside other wrappers of the same attribute, in and out in any order."""

from __future__ import annotations

import functools
from typing import Any, Callable

import pytest

from contextthreads._patching import Switch, apply, call_as_attribute, remove

wrapt = pytest.importorskip("wrapt", reason="wrapt does not install here")
PROXY = getattr(wrapt, "BaseObjectProxy", None) or wrapt.ObjectProxy


def _calls(log: list[str], label: str) -> Callable[[Any, Switch], Callable[..., Any]]:
    """Return a ``make`` whose patch logs ``label`` and calls what it wraps, bound."""

    def make(target: Any, switch: Switch) -> Callable[..., Any]:
        call = call_as_attribute(target)

        def patched(self: Any, *args: Any) -> Any:
            log.append(label)
            return call(self, *args)

        return patched

    return make


def _tracing(log: list[str], label: str) -> Callable[..., Any]:
    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        log.append(label)
        return wrapped(*args, **kwargs)

    return wrapper


def _unwrap(cls: type, name: str) -> None:
    # OpenTelemetry's unwrap(): the class attribute's __wrapped__ goes back in its place.
    current = vars(cls)[name]
    if isinstance(current, PROXY):
        setattr(cls, name, current.__wrapped__)


class Base:
    def method(self, x: int) -> tuple[str, int]:
        return ("base", x)


@pytest.mark.parametrize(
    "descriptor",
    [
        functools.partialmethod(lambda self, x, y: (type(self).__name__, x, y), 1),
        classmethod(lambda cls, y: (cls.__name__, y)),
        staticmethod(lambda y: ("static", y)),
        wrapt.FunctionWrapper(lambda self, y: ("wrapped", y), lambda w, i, a, k: w(*a, **k)),
    ],
    ids=["partialmethod", "classmethod", "staticmethod", "wrapt"],
)
def test_what_a_patch_wraps_is_called_as_attribute_access_would(descriptor: Any) -> None:
    """A descriptor that is not a plain function is bound to the instance before the call."""

    class Owner:
        attr = descriptor

    owner = Owner()
    assert call_as_attribute(vars(Owner)["attr"])(owner, 2) == owner.attr(2)


def test_patch_goes_beneath_a_proxy_whose_owner_then_unwraps_it() -> None:
    """Beneath a wrapt proxy, ours is what the proxy's owner puts back; removing it restores."""
    log: list[str] = []

    class Patched(Base):
        pass

    wrapt.wrap_function_wrapper(Patched, "method", _tracing(log, "theirs"))
    patch = apply(Patched, "method", _calls(log, "ours"), Switch())
    assert Patched().method(3) == ("base", 3)
    assert log == ["theirs", "ours"]
    _unwrap(Patched, "method")
    assert vars(Patched)["method"] is patch.replacement
    assert remove(patch)
    assert "method" not in vars(Patched)  # what it inherits is the original again


def test_patch_comes_out_from_beneath_a_proxy_put_over_it() -> None:
    """A proxy wrapped ours later: removing ours first leaves the proxy around the original."""
    log: list[str] = []

    class Patched(Base):
        def method(self, x: int) -> tuple[str, int]:
            return ("own", x)

    original = vars(Patched)["method"]
    patch = apply(Patched, "method", _calls(log, "ours"), Switch())
    wrapt.wrap_function_wrapper(Patched, "method", _tracing(log, "theirs"))
    assert remove(patch)
    assert vars(Patched)["method"].__wrapped__ is original
    assert Patched().method(4) == ("own", 4)
    assert log == ["theirs"]


def test_patch_inside_a_plain_wrapper_is_out_of_reach() -> None:
    """A plain function that captured ours is opaque: remove() says so, and changes nothing."""
    log: list[str] = []

    class Patched(Base):
        pass

    patch = apply(Patched, "method", _calls(log, "ours"), Switch())
    ours = vars(Patched)["method"]

    @functools.wraps(ours)
    def theirs(self: Any, x: int) -> Any:
        return ours(self, x)

    Patched.method = theirs  # type: ignore[method-assign]
    assert not remove(patch)
    assert vars(Patched)["method"] is theirs
    Patched.method = ours  # type: ignore[method-assign]  # their teardown
    assert remove(patch)
    assert "method" not in vars(Patched)


def test_remove_also_clears_a_subclass_copy_that_reaches_ours() -> None:
    """A subclass's own wrapper of the patched attribute (OTel's on Timer) lets go of ours."""
    log: list[str] = []

    class Patched(Base):
        def method(self, x: int) -> tuple[str, int]:
            return ("own", x)

    class Sub(Patched):
        pass

    original = vars(Patched)["method"]
    patch = apply(Patched, "method", _calls(log, "ours"), Switch())
    wrapt.wrap_function_wrapper(Sub, "method", _tracing(log, "theirs"))
    assert vars(Sub)["method"].__wrapped__ is patch.replacement
    assert remove(patch)
    assert vars(Patched)["method"] is original
    assert vars(Sub)["method"].__wrapped__ is original
    assert Sub().method(5) == ("own", 5)
    assert log == ["theirs"]
