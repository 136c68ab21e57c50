"""Case 2: Thread start+join and Timer start+join, against the stdlib."""

from __future__ import annotations

import sys
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
    # Op by op: a start+join (50 to 200 us) is long enough to time singly, and
    # pairing each with one of the other variant damps the machine's noise.
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
        # Before 3.14 the target is case 7's floor, beside it in the matrix.
        target = {ours: "<=1.02x"} if sys.version_info >= (3, 14) else None
        rows += compare_ops(case, baseline, ops_variants, ops, rounds, target)
    return rows
