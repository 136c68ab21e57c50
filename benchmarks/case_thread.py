"""Case 2: Thread start+join and Timer start+join, against the stdlib."""

from __future__ import annotations

import threading
from typing import Callable

from _common import noop, set_context_vars
from _harness import Row, compare_ops

from contextthreads import ContextThread, ContextTimer


def _start_join(make: Callable[[], threading.Thread]) -> Callable[[], None]:
    def op() -> None:
        t = make()
        t.start()
        t.join()

    return op


def run(ops: int, rounds: int) -> list[Row]:
    """Time ``ops`` start+join per round, threads and timers; return the table rows."""
    set_context_vars(10)
    # Op by op: a start+join (about 200 us here) is long enough to time singly,
    # and pairing each with one of the other variant damps the machine's noise.
    rows = compare_ops(
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
    rows += compare_ops(
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
