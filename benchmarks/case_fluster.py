"""Case 5: Fluster WorkerPool against ProcessPoolExecutor(2) (not written yet)."""

from __future__ import annotations

from _harness import Row


def run(ops: int, rounds: int) -> list[Row]:
    """Return no rows until contextthreads.fluster exists."""
    return []
