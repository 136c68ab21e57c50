"""Make ``contextvars`` follow work into threads.

Swap one import: ``Thread``, ``Timer`` and ``ThreadPoolExecutor`` from this
package behave as the stdlib's, except that the work runs in a copy of the
context of whoever started or submitted it. ``install()`` does the same for
every stdlib thread and pool in the process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._bind import bind
from ._executor import ContextThreadPoolExecutor
from ._install import install, installed, uninstall
from ._thread import ContextThread, ContextTimer

if TYPE_CHECKING:
    from ._asyncio import run_in_executor, use_context_executor

Thread = ContextThread
Timer = ContextTimer
ThreadPoolExecutor = ContextThreadPoolExecutor

__all__ = (
    "ContextThread",
    "ContextThreadPoolExecutor",
    "ContextTimer",
    "Thread",
    "ThreadPoolExecutor",
    "Timer",
    "bind",
    "install",
    "installed",
    "run_in_executor",
    "uninstall",
    "use_context_executor",
)


def __getattr__(name: str) -> object:
    # The asyncio helpers load asyncio (tens of ms); only pay for it on use.
    if name in ("run_in_executor", "use_context_executor"):
        from . import _asyncio

        return getattr(_asyncio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
