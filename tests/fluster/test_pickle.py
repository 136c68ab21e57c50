"""Serialization with cloudpickle, ContextVar objects by reference."""

from __future__ import annotations

import collections
import contextvars
import datetime
import functools
import sys
import threading
import types
from typing import Callable, Iterator

import pytest

from contextthreads.fluster import _pickle

from . import tasks

pytest.importorskip("cloudpickle")


def test_context_vars_pickle_by_reference() -> None:
    """A ContextVar held by a module comes back as that very variable; one no module holds
    comes back as one process-wide variable of the same name, the same on every load."""

    assert _pickle.loads(_pickle.dumps(tasks.REQUEST_ID)) is tasks.REQUEST_ID
    local: contextvars.ContextVar[int] = contextvars.ContextVar("fluster_local_only")
    first = _pickle.loads(_pickle.dumps(local))
    assert isinstance(first, contextvars.ContextVar)
    assert first.name == "fluster_local_only"
    assert _pickle.loads(_pickle.dumps((local, 1)))[0] is first


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    "make", [threading.Lock, threading.RLock, threading.local, _generator, sys._getframe]
)
def test_objects_whose_state_pickle_cannot_see_are_refused(make: Callable[[], object]) -> None:
    """A lock, a generator, a frame, a threading.local: TypeError at dumps() on every
    implementation, as CPython's pickle gives (PyPy's would write them and fail at loads)."""
    with pytest.raises(TypeError, match=r"cannot pickle '.*' object"):
        _pickle.dumps(make())


def test_builtin_values_with_a_reduction_still_pickle() -> None:
    """Built-in values pickle knows, or that reduce themselves, round-trip unchanged."""
    values = [
        object,
        len,
        range(3),
        collections.deque([1, 2]),
        functools.partial(int, "7"),
        types.SimpleNamespace(a=1),
        datetime.timedelta(days=1),
        slice(1, 2),
        {1: frozenset({2})},
    ]
    copies = _pickle.loads(_pickle.dumps(values))
    assert copies[:2] == [object, len]
    assert copies[2:4] == values[2:4]
    assert copies[4]() == 7
    assert copies[5:] == values[5:]
