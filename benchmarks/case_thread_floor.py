"""Case 7: the least a pure-Python drop-in pays for a thread's start+join before 3.14.

Before 3.14 the stdlib gives a ``Thread`` subclass no hook for a context, so a
pure-Python drop-in needs at least an ``__init__`` that accepts ``context=``
and one piece of its own code run by ``start()`` in the starting thread,
where the copy must be taken. The pieces are built up one at a time against
``threading.Thread``; the last but one, the new thread entering a copy taken
there, is the floor, and ``ContextThread`` (which adds keeping the
excepthook outside the context) is timed against it directly, as
``ContextTimer`` is against the same floor built on ``threading.Timer``. All
op by op, as case 2 is.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import threading
from typing import Any, Callable, Iterable, Mapping

from _common import noop, set_context_vars
from _harness import Row, compare_ops
from case_thread import _start_join

from contextthreads import ContextThread, ContextTimer

CASE = "7. a thread's start+join before 3.14: the floor"
BASELINE = "threading.Thread"
FLOOR = "the floor: + the new thread entering a copy taken there"
TIMER_FLOOR = "the floor on threading.Timer"
#: Before 3.14, ours stays within half a percentage point of the floor.
DISTANCE = "<=1.005x"

_Thread = threading.Thread
_partial = functools.partial
_copy_context = contextvars.copy_context
_context_run: Callable[..., Any] = contextvars.Context.run


class _Subclass(threading.Thread):
    pass


class _TakesContext(threading.Thread):
    # As ContextThread's own __init__ before 3.14, less the excepthook.
    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
        context: contextvars.Context | None = None,
    ) -> None:
        _Thread.__init__(self, group, target, name, args, kwargs, daemon=daemon)
        self._given_context = context


class _HookedStart(_TakesContext):
    # The stdlib's start() reads self._bootstrap in the starting thread: the
    # one place before 3.14 where code of a subclass runs there while it starts.
    @property
    def _bootstrap(self) -> Callable[[], None]:
        return _partial(_Thread._bootstrap, self)  # type: ignore[attr-defined]


class _EntersCopy(_TakesContext):
    @property
    def _bootstrap(self) -> Callable[[], None]:
        return _partial(_context_run, _copy_context(), _Thread._bootstrap, self)  # type: ignore[attr-defined]


class _TimerFloor(threading.Timer):
    # The same two hooks on a Timer, as ContextTimer's own __init__ less the excepthook.
    def __init__(
        self,
        interval: float,
        function: Callable[..., object],
        args: Iterable[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        *,
        context: contextvars.Context | None = None,
    ) -> None:
        threading.Timer.__init__(self, interval, function, args, kwargs)
        self._given_context = context

    _bootstrap = vars(_EntersCopy)["_bootstrap"]


PIECES: dict[str, type[threading.Thread]] = {
    "an empty Thread subclass": _Subclass,
    "+ an __init__ taking context=": _TakesContext,
    "+ a _bootstrap property read by start() (no context)": _HookedStart,
    FLOOR: _EntersCopy,
}


def run(ops: int, rounds: int) -> list[Row]:
    """Time ``ops`` start+join per round for each piece and the floors; return the rows."""
    if sys.version_info >= (3, 14):
        # 3.14 runs run() in a context natively: ours is another mechanism there.
        return [Row(CASE, "all pieces", BASELINE, *[float("nan")] * 4, note="3.13 or older")]
    set_context_vars(10)
    thread = _start_join(_partial(threading.Thread, target=noop))
    timer = _start_join(_partial(threading.Timer, 0, noop))
    floor = _start_join(_partial(_EntersCopy, target=noop))
    timer_floor = _start_join(_partial(_TimerFloor, 0, noop))
    pairs = [
        (BASELINE, thread, name, _start_join(_partial(cls, target=noop)), "")
        for name, cls in PIECES.items()
    ]
    pairs += [
        ("threading.Timer", timer, TIMER_FLOOR, timer_floor, ""),
        # Ours against the floor directly: the distance in one comparison.
        (
            FLOOR,
            floor,
            "ContextThread",
            _start_join(_partial(ContextThread, target=noop)),
            DISTANCE,
        ),
        (
            TIMER_FLOOR,
            timer_floor,
            "ContextTimer",
            _start_join(_partial(ContextTimer, 0, noop)),
            DISTANCE,
        ),
    ]
    rows: list[Row] = []
    for base_name, base, name, op, target in pairs:
        pair = {base_name: base, name: op}
        rows += compare_ops(CASE, base_name, pair, ops, rounds, {name: target})[1:]
    return rows
