"""Case 2: Thread start+join and Timer start+join, against the stdlib."""

from __future__ import annotations

import threading
from typing import Callable

from _common import noop, set_context_vars
from _harness import Row, compare, timed

from contextthreads import ContextThread, ContextTimer


def _start_join(make: Callable[[], threading.Thread]) -> Callable[[int], float]:
    def variant(n: int) -> float:
        def body() -> None:
            for _ in range(n):
                t = make()
                t.start()
                t.join()

        return timed(body)

    return variant


def run(ops: int, rounds: int) -> list[Row]:
    """Time ``ops`` start+join per round, threads and timers; return the table rows."""
    set_context_vars(10)
    rows = compare(
        "2. Thread start+join",
        "threading.Thread",
        {
            "threading.Thread": _start_join(lambda: threading.Thread(target=noop)),
            "ContextThread": _start_join(lambda: ContextThread(target=noop)),
        },
        ops,
        rounds,
        {"ContextThread": "<=1.02x"},
    )
    rows += compare(
        "2. Timer(0) start+join",
        "threading.Timer",
        {
            "threading.Timer": _start_join(lambda: threading.Timer(0, noop)),
            "ContextTimer": _start_join(lambda: ContextTimer(0, noop)),
        },
        ops,
        rounds,
        {"ContextTimer": "<=1.02x"},
    )
    return rows
