"""Make ``contextvars`` follow work into threads.

Swap one import: ``Thread``, ``Timer`` and ``ThreadPoolExecutor`` from this
package behave as the stdlib's, except that the work runs in a copy of the
context of whoever started or submitted it. ``install()`` does the same for
every stdlib thread and pool in the process.
"""

from __future__ import annotations

from ._bind import bind
from ._thread import ContextThread, ContextTimer

# Annotations only: importing typing would double this package's import time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._asyncio import run_in_executor, use_context_executor
    from ._executor import ContextThreadPoolExecutor
    from ._install import install, installed, is_installed, uninstall

    ThreadPoolExecutor = ContextThreadPoolExecutor

Thread = ContextThread
Timer = ContextTimer

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
    "is_installed",
    "run_in_executor",
    "uninstall",
    "use_context_executor",
)

# Loaded on first use: concurrent.futures (and with it logging) and asyncio
# cost several times what threading does to import, and a program that only
# wants Thread should not pay for them.
_LAZY = {
    "ContextThreadPoolExecutor": ("_executor", "ContextThreadPoolExecutor"),
    "ThreadPoolExecutor": ("_executor", "ContextThreadPoolExecutor"),
    "install": ("_install", "install"),
    "installed": ("_install", "installed"),
    "is_installed": ("_install", "is_installed"),
    "uninstall": ("_install", "uninstall"),
    "run_in_executor": ("_asyncio", "run_in_executor"),
    "use_context_executor": ("_asyncio", "use_context_executor"),
}


def __getattr__(name: str) -> object:
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    from importlib import import_module

    value = getattr(import_module(f".{module_name}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
