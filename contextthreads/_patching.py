"""Patch a class attribute beside other libraries' wrappers of it, and take the patch out.

A patch goes beneath a wrapt proxy found in the class (OpenTelemetry's), so that
the proxy's owner can unwrap it as usual, and comes out from beneath any proxy
put over it since. A plain function wrapper put over it cannot be seen into:
``remove()`` then reports failure, and the caller decides (see ``_install``).
Nothing here knows about threads.
"""

from __future__ import annotations

import collections
import sys
import types
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

if TYPE_CHECKING:
    from typing_extensions import TypeAlias

    Make: TypeAlias = Callable[[Any, "Switch"], Any]

__all__ = (
    "MISSING",
    "Make",
    "Patch",
    "Switch",
    "apply",
    "call_as_attribute",
    "holder_of",
    "insertion_point",
    "leftover_note",
    "remove",
    "subclasses",
    "wrapper_chain",
)

MISSING: Any = object()


class Switch:
    """Whether the patches of one install are on. Each install makes its own.

    A patch left behind by an uninstall (see ``_settle``) keeps its switch,
    turned off, for good: a later install cannot wake it.
    """

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True


class Patch(NamedTuple):
    cls: type
    name: str
    original: Any  # what ours calls: the raw attribute it stands in for, or MISSING
    replacement: Any


def is_proxy(value: object) -> bool:
    # wrapt's proxies (OpenTelemetry's wrap_function_wrapper, New Relic's...)
    # let what they wrap be replaced, and their owners unwrap them by putting
    # __wrapped__ back in the class. No wrapt imported, no wrapt proxy exists.
    wrapt = sys.modules.get("wrapt")
    if wrapt is None:
        return False
    base = getattr(wrapt, "BaseObjectProxy", None) or getattr(wrapt, "ObjectProxy", None)
    return base is not None and isinstance(value, base)


def wrapper_chain(value: Any) -> list[Any]:
    # A value and what it wraps, down a chain of wrappers that say (functools.wraps, wrapt).
    chain = [value]
    for _ in range(100):
        value = getattr(value, "__wrapped__", MISSING)
        if value is MISSING:
            break
        chain.append(value)
    return chain


def inherited(cls: type, name: str) -> Any:
    return next((vars(k)[name] for k in cls.__mro__[1:] if name in vars(k)), MISSING)


def call_as_attribute(raw: Any) -> Callable[..., Any]:
    """Return a function of ``(instance, *args)`` calling ``raw`` as attribute access would."""
    if type(raw) is types.FunctionType:
        return raw
    if getattr(type(raw), "__get__", None) is None:
        return lambda instance, /, *args, **kwargs: raw(*args, **kwargs)

    # A wrapt FunctionWrapper, a partialmethod, any other descriptor: bind it.
    def call(instance: Any, /, *args: Any, **kwargs: Any) -> Any:
        return raw.__get__(instance, type(instance))(*args, **kwargs)

    return call


def insertion_point(cls: type, name: str) -> tuple[Any, Any]:
    """Return where a patch of ``cls.name`` goes, and what it then wraps.

    The holder is the deepest wrapt proxy in the class's own attribute, whose
    ``__wrapped__`` ours replaces, or None for the class itself. An inherited
    attribute, proxy or not, is its class's: ours shadows it.
    """
    holder = None
    target = cls.__dict__.get(name, MISSING)
    if target is MISSING:
        return None, inherited(cls, name)
    while is_proxy(target):
        holder, target = target, target.__wrapped__
    return holder, target


def apply(cls: type, name: str, make: Make, switch: Switch) -> Patch:
    holder, target = insertion_point(cls, name)
    replacement = make(target, switch)
    if holder is None:
        setattr(cls, name, replacement)
    else:
        holder.__wrapped__ = replacement
    return Patch(cls, name, target, replacement)


def subclasses(cls: type) -> list[type]:
    # Breadth first: a class comes after the classes it derives from through cls.
    found: list[type] = []
    seen = {id(cls)}
    todo: collections.deque[type] = collections.deque(type.__subclasses__(cls))
    while todo:
        sub = todo.popleft()
        if id(sub) not in seen:
            seen.add(id(sub))
            found.append(sub)
            todo.extend(type.__subclasses__(sub))
    return found


def holder_of(patch: Patch, cls: type) -> Any:
    """Return ``cls`` if ours is its attribute, the proxy whose ``__wrapped__`` it is, or None."""
    outer = cls.__dict__.get(patch.name, MISSING)
    if outer is patch.replacement:
        return cls
    while is_proxy(outer):
        inner = outer.__wrapped__
        if inner is patch.replacement:
            return outer
        outer = inner
    return None


def take_out(patch: Patch, cls: type) -> bool:
    holder = holder_of(patch, cls)
    if holder is None:
        return False
    if holder is not cls:
        holder.__wrapped__ = patch.original
    elif inherited(cls, patch.name) is patch.original:
        # The class had no attribute of its own, or one a proxy's owner just put back.
        delattr(cls, patch.name)
    else:
        setattr(cls, patch.name, patch.original)
    return True


def remove(patch: Patch) -> bool:
    """Take ``patch`` out wherever it now sits; False if something out of our reach holds it."""
    if not take_out(patch, patch.cls):
        return False
    # Copies of ours a subclass got since: OpenTelemetry's uninstrument leaves
    # Timer.start bound to its Thread.start wrapper, which wraps ours.
    for sub in subclasses(patch.cls):
        take_out(patch, sub)
    return True


def describe(value: Any) -> str:
    if is_proxy(value):
        return f"a {type(value).__module__}.{type(value).__qualname__}"
    code = getattr(value, "__code__", None)
    if code is not None:
        module = getattr(value, "__globals__", {}).get("__name__", "?")
        # Not __qualname__, which functools.wraps copies from what it wraps.
        name = getattr(code, "co_qualname", None)  # 3.11+
        if name is None:
            name = code.co_name if hasattr(value, "__wrapped__") else value.__qualname__
        return f"{module}.{name}"
    return repr(value)


def leftover_note(patch: Patch) -> str:
    where = f"{patch.cls.__module__}.{patch.cls.__qualname__}.{patch.name}"
    outer: list[Any] = [patch.cls.__dict__.get(patch.name)]
    while is_proxy(outer[-1]):
        outer.append(outer[-1].__wrapped__)
    now = " around ".join(describe(value) for value in outer)
    return (
        f"contextthreads.uninstall(): {where} was replaced after contextthreads.install(), "
        f"by {now}, and contextthreads' patch is not within reach beneath it. That "
        f"replacement was left in place. If it still calls contextthreads' patch, the patch "
        f"now passes every call straight through to what it wrapped, and takes itself out as "
        f"soon as it is {where} again (once the other library removes its wrapper). Threads "
        f"and tasks started from now on get no context from contextthreads. Remove wrappers in "
        f"the reverse order of installing them to leave nothing behind."
    )
