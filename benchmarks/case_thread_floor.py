"""Case 7 (on request): where a thread's start+join overhead goes before 3.14.

Not part of the default run. Before 3.14 the stdlib gives a ``Thread``
subclass no hook for a context, so a pure-Python drop-in needs at least an
``__init__`` that accepts ``context=`` and one piece of its own code run by
``start()`` in the starting thread, where the copy must be taken. Each variant
adds one piece, ending with ``ContextThread`` itself; each is timed against
``threading.Thread`` in rounds of its own, op by op, as case 2 is.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import threading
from typing import Any, Callable, Iterable, Mapping

from _common import noop, set_context_vars
from _harness import Row, interleave_ops, rows_for
from case_thread import _start_join

from contextthreads import ContextThread

CASE = "7. where a thread's start overhead goes (before 3.14)"
BASELINE = "threading.Thread"

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


VARIANTS: dict[str, type[threading.Thread]] = {
    "an empty Thread subclass": _Subclass,
    "+ an __init__ taking context=": _TakesContext,
    "+ a _bootstrap property read by start() (no context)": _HookedStart,
    "+ the new thread entering a copy taken there": _EntersCopy,
    "ContextThread (all of it: + the excepthook kept outside)": ContextThread,
}


def run(ops: int, rounds: int) -> list[Row]:
    """Time ``ops`` start+join per round for each piece against the stdlib; return the rows."""
    if sys.version_info >= (3, 14):
        # 3.14 runs run() in a context natively: ours is another mechanism there.
        return [Row(CASE, "all pieces", BASELINE, *[float("nan")] * 4, note="3.13 or older")]
    set_context_vars(10)
    rows: list[Row] = []
    baseline = _start_join(_partial(threading.Thread, target=noop))
    for name, cls in VARIANTS.items():
        ours = _start_join(_partial(cls, target=noop))
        times = interleave_ops({BASELINE: baseline, name: ours}, ops, rounds)
        found = rows_for(CASE, BASELINE, times, ops)
        # The baseline's own row once, at the top.
        rows += found[1:] if rows else found
    return rows
