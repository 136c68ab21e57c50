"""Shared test configuration: hypothesis profile, session check, excepthook recorder, bounded join.

The ``threads`` profile is loaded unless ``HYPOTHESIS_PROFILE`` names another
registered one (``threads-thorough`` runs many more examples).
"""

from __future__ import annotations

import gc
import os
import sys
import threading
from typing import Any, Callable, Iterator

import pytest
from bounds import WAIT
from hypothesis import HealthCheck, settings


def joined(thread: threading.Thread) -> threading.Thread:
    """Join ``thread`` (bounded) and check it finished."""
    thread.join(WAIT)
    assert not thread.is_alive()
    return thread


def collect_garbage() -> None:
    """Free whatever is unreachable, on PyPy too.

    PyPy frees nothing until it collects, and what an object with a finalizer (a
    finished asyncio future, a generator) holds only on a later collection.
    """
    for _ in range(3):
        gc.collect()


# Threads make example timings noisy on a busy machine, so no deadline; the
# example counts keep the whole core suite well under a minute per interpreter.
for _profile, _examples in (("threads", 30), ("threads-thorough", 500)):
    settings.register_profile(
        _profile,
        deadline=None,
        max_examples=_examples,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "threads"))

EXPECT_INHERIT_VAR = "CONTEXTTHREADS_EXPECT_INHERIT"


def expect_inherit() -> bool:
    """Return True if the session was asked to run with thread context inheritance on."""
    return os.environ.get(EXPECT_INHERIT_VAR) == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once if the session promised inheritance and the interpreter has it off."""
    if expect_inherit() and getattr(sys.flags, "thread_inherit_context", 0) != 1:
        raise pytest.UsageError(
            f"{EXPECT_INHERIT_VAR}=1 but sys.flags.thread_inherit_context is "
            f"{getattr(sys.flags, 'thread_inherit_context', None)!r}: "
            "run with PYTHON_THREAD_INHERIT_CONTEXT=1 or -X thread_inherit_context=1 on 3.14+"
        )


class ExceptHookRecorder:
    """Collect the ``threading.excepthook`` calls made while installed.

    Calls arrive from the failing thread before it ends, so once that thread
    is joined its call is in ``calls``. Appending is thread-safe.
    """

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def __call__(self, args: Any) -> None:
        self.calls.append(args)

    def for_thread(self, thread: threading.Thread) -> list[Any]:
        """Return the recorded calls whose ``thread`` is ``thread``."""
        return [call for call in self.calls if call.thread is thread]


@pytest.fixture
def excepthook() -> Iterator[ExceptHookRecorder]:
    """Replace ``threading.excepthook`` with a recorder for the test, then restore it."""
    recorder = ExceptHookRecorder()
    saved: Callable[[Any], object] = threading.excepthook
    threading.excepthook = recorder
    try:
        yield recorder
    finally:
        threading.excepthook = saved
