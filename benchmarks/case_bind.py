"""Case 4: calling a bind()-wrapped function against copy_context().run(fn)."""

from __future__ import annotations

import contextvars

from _common import noop, set_context_vars
from _harness import Row, compare, timed

from contextthreads import bind


def _copy_context_run(n: int) -> float:
    copy_context = contextvars.copy_context

    def body() -> None:
        for _ in range(n):
            copy_context().run(noop)

    return timed(body)


def _bound(n: int) -> float:
    bound = bind(noop)

    def body() -> None:
        for _ in range(n):
            bound()

    return timed(body)


def _plain(n: int) -> float:
    def body() -> None:
        for _ in range(n):
            noop()

    return timed(body)


def run(ops: int, rounds: int) -> list[Row]:
    """Time ``ops`` calls per round of each way to run in a copied context."""
    set_context_vars(10)
    return compare(
        "4. call in a copied context",
        "copy_context().run(fn)",
        {
            "copy_context().run(fn)": _copy_context_run,
            "bind(fn)()": _bound,
            "fn() (no context)": _plain,
        },
        ops,
        rounds,
    )
