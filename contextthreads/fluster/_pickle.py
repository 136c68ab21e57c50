"""Serialize with cloudpickle, sending ``ContextVar`` objects by name.

cloudpickle ships no type information, so it is imported here, lazily and
typed as ``Any``, and nowhere else. A ``ContextVar`` cannot be pickled; one
that a callable refers to, or whose value travels with a task, is sent as a
reference: the module attribute that holds it if there is one the receiver
can import, else its name, which the receiver maps to one process-wide
variable per name.
"""

from __future__ import annotations

import contextvars
import importlib
import io
import pickle
import sys
import threading
from typing import Any

__all__ = ("dumps", "loads", "lookup_context_var")

_cloudpickle: Any = None
_pickler_class: Any = None
_lock = threading.Lock()

#: id(var) -> (var, (module, attribute, name)); holding ``var`` keeps the id valid.
_located: dict[int, tuple[contextvars.ContextVar[Any], tuple[str | None, str | None, str]]] = {}
#: Variables made up on the receiving side for references that name no importable module.
_by_name: dict[str, contextvars.ContextVar[Any]] = {}


def _module() -> Any:
    global _cloudpickle
    if _cloudpickle is None:
        try:
            _cloudpickle = importlib.import_module("cloudpickle")
        except ImportError as exc:
            raise ImportError(
                "contextthreads.fluster needs cloudpickle: pip install 'contextthreads[fluster]'"
            ) from exc
    return _cloudpickle


def _locate(var: contextvars.ContextVar[Any]) -> tuple[str | None, str | None, str]:
    with _lock:
        found = _located.get(id(var))
        if found is not None:
            return found[1]
    key: tuple[str | None, str | None, str] = (None, None, var.name)
    for modname, module in list(sys.modules.items()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for attr, value in list(namespace.items()):
            if value is var:
                key = (modname, attr, var.name)
                break
        if key[0] is not None:
            break
    with _lock:
        _located[id(var)] = (var, key)
    return key


def lookup_context_var(module: str | None, attr: str | None, name: str) -> Any:
    """Return the ``ContextVar`` a reference made by ``dumps()`` stands for, in this process.

    Thread-safe. Used by unpickling; not meant to be called directly.
    """
    if module is not None and attr is not None and module != "__main__":
        try:
            value = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            value = None
        if isinstance(value, contextvars.ContextVar):
            return value
    with _lock:
        var = _by_name.get(name)
        if var is None:
            var = _by_name[name] = contextvars.ContextVar(name)
        return var


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE: a class made by a class statement


def _stateful_builtin(pickler: Any, cls: type) -> bool:
    """Return whether a ``cls`` object has state pickling cannot see (PyPy; see ``_Pickler``).

    A built-in type that neither the pickler's tables nor a reduce method of its own
    handle: a lock, a generator, a frame, a ``threading.local``.
    """
    if cls.__flags__ & _HEAP_TYPE or cls is object or issubclass(cls, type):
        return False
    if cls in pickler.dispatch or cls in pickler.dispatch_table:
        return False
    return (
        cls.__reduce_ex__ is object.__reduce_ex__
        and cls.__reduce__ is object.__reduce__
        and getattr(cls, "__getstate__", None) is getattr(object, "__getstate__", None)
        and not hasattr(cls, "__getnewargs_ex__")
        and not hasattr(cls, "__getnewargs__")
    )


def _pickler() -> Any:
    global _pickler_class
    if _pickler_class is None:
        base = _module().CloudPickler
        # On PyPy, cloudpickle builds on pickle's pure-Python Pickler, which calls a
        # reducer_override() if there is one but has none of its own.
        parent = getattr(base, "reducer_override", None)

        class _Pickler(base):  # type: ignore[misc, valid-type]
            def reducer_override(self, obj: Any) -> Any:
                if type(obj) is contextvars.ContextVar:
                    return lookup_context_var, _locate(obj)
                if parent is not None:
                    return parent(self, obj)
                if _stateful_builtin(self, type(obj)):
                    # What CPython's pickle refuses (its C state cannot be saved);
                    # PyPy's would save it as empty, and fail, or worse, on loads.
                    cls = type(obj)
                    raise TypeError(f"cannot pickle '{cls.__module__}.{cls.__name__}' object")
                return NotImplemented

        _pickler_class = _Pickler
    return _pickler_class


def dumps(obj: object) -> bytes:
    """Return ``obj`` serialized with cloudpickle; ``ContextVar`` objects go by reference.

    Raises whatever pickling raises (``TypeError``, ``pickle.PicklingError``...).
    Thread-safe.
    """
    buffer = io.BytesIO()
    _pickler()(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def loads(data: bytes) -> Any:
    """Return the object ``data`` holds. Only call it on data whose signature was verified."""
    _module()  # cloudpickle's reconstructors must be importable
    return pickle.loads(data)


def callable_name(fn: object) -> str:
    """Return a short printable name for ``fn``, for logs and error messages."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__
