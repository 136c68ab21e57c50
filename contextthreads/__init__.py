"""Make ``contextvars`` follow work into threads.

Swap one import: ``Thread``, ``Timer`` and ``ThreadPoolExecutor`` from this
package behave as the stdlib's, except that the work runs in a copy of the
context of whoever started or submitted it.
"""

from __future__ import annotations

from ._bind import bind
from ._executor import ContextThreadPoolExecutor
from ._thread import ContextThread, ContextTimer

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
)
