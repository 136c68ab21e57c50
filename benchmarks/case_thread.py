"""Case 2: Thread start+join and Timer start+join, against the stdlib."""

from __future__ import annotations

import threading
from typing import Callable

from _common import noop, set_context_vars
from _harness import Row, interleave_ops, rows_for

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
    rows: list[Row] = []
    for case, baseline, make_baseline, ours, make_ours in [
        (
            "2. Thread start+join",
            "threading.Thread",
            lambda: threading.Thread(target=noop),
            "ContextThread",
            lambda: ContextThread(target=noop),
        ),
        (
            "2. Timer(0) start+join",
            "threading.Timer",
            lambda: threading.Timer(0, noop),
            "ContextTimer",
            lambda: ContextTimer(0, noop),
        ),
    ]:
        ops_variants = {baseline: _start_join(make_baseline), ours: _start_join(make_ours)}
        times = interleave_ops(ops_variants, ops, rounds)
        rows += rows_for(case, baseline, times, ops, {ours: "<=1.02x"})
    return rows
