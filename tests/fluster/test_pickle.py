"""Serialization with cloudpickle, ContextVar objects by reference."""

from __future__ import annotations

import contextvars

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
