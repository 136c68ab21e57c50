"""Run bodies of code at the same moment from many threads, to find races.

On a free-threaded build the threads really run in parallel; elsewhere
``switching_often()`` makes the interpreter hand the GIL over every few
instructions, so that even there the bodies interleave as finely as it allows.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from typing import Callable, Iterator

from bounds import LONG_WAIT, WAIT

#: True on a free-threaded build running with the GIL off.
FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()


@contextlib.contextmanager
def switching_often() -> Iterator[None]:
    """Make the GIL change hands as often as the interpreter allows, for the block."""
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


def run_together(bodies: list[Callable[[], None]]) -> None:
    """Run each body in a thread of its own, all released by one barrier; join them (bounded).

    Each thread starts in an empty context. The first exception a body raised
    is raised here, once every thread has ended.
    """
    barrier = threading.Barrier(len(bodies))
    failures: list[BaseException] = []

    def run(body: Callable[[], None]) -> None:
        try:
            barrier.wait(WAIT)
            body()
        except BaseException as exc:  # handed to the caller
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(body,)) for body in bodies]
    with switching_often():
        for thread in threads:
            contextvars.Context().run(thread.start)
        for thread in threads:
            thread.join(LONG_WAIT)
    assert not [thread for thread in threads if thread.is_alive()], "a racing thread hung"
    if failures:
        raise failures[0]
