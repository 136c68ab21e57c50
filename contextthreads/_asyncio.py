"""Carry context from asyncio tasks into threads: a default executor and an awaitable call."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import TYPE_CHECKING, Callable

from ._executor import ContextThreadPoolExecutor

if TYPE_CHECKING:
    from ._typing import P, T

__all__ = ("run_in_executor", "use_context_executor")

# A Context cannot be sent to another process or interpreter.
_NO_CONTEXT: tuple[type, ...] = (ProcessPoolExecutor,)
if sys.version_info >= (3, 14):
    from concurrent.futures import InterpreterPoolExecutor

    _NO_CONTEXT += (InterpreterPoolExecutor,)


def use_context_executor(
    loop: asyncio.AbstractEventLoop | None = None, *, max_workers: int | None = None
) -> ContextThreadPoolExecutor:
    """Give ``loop`` a ``ContextThreadPoolExecutor`` as its default executor, and return it.

    Afterwards ``loop.run_in_executor(None, fn)`` runs ``fn`` in a copy of the
    context of the task that called it, as ``asyncio.to_thread`` already does;
    its worker threads start in an empty context. With ``loop=None`` this must
    be called from inside the running loop (typically first thing in the
    coroutine given to ``asyncio.run()``), else ``RuntimeError``; pass a loop
    to set one up before it runs. Like the loop's own methods it is not
    thread-safe: call it from the loop's thread, or before the loop runs.

    ``max_workers`` is ``ThreadPoolExecutor``'s (``None``: its default).
    Threads are named ``asyncio_N`` like asyncio's own. A default executor the
    loop already had is shut down without waiting (calls already running in it
    finish). ``asyncio.run()`` and ``loop.shutdown_default_executor()`` shut
    the new one down as they do any default executor.

    Args:
        loop: The event loop to set up; ``None`` for the running one.
        max_workers: The new pool's ``max_workers``, a positive int; ``None``
            for ``ThreadPoolExecutor``'s default.

    Returns:
        The ``ContextThreadPoolExecutor`` now the loop's default executor.

    Raises:
        RuntimeError: With ``loop=None`` outside a running loop, or when the
            loop is closed.
        TypeError: When ``loop`` is not an ``asyncio.AbstractEventLoop``.
        ValueError: When ``max_workers`` is 0 or less.
    """
    if loop is None:
        loop = asyncio.get_running_loop()
    elif not isinstance(loop, asyncio.AbstractEventLoop):
        raise TypeError(f"loop must be an asyncio event loop or None, not {type(loop).__name__}")
    if loop.is_closed():
        raise RuntimeError("Event loop is closed")
    executor = ContextThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="asyncio")
    # asyncio offers no public way to read the current default; every stdlib
    # loop (and uvloop) keeps it here.
    previous = getattr(loop, "_default_executor", None)
    loop.set_default_executor(executor)
    if isinstance(previous, Executor) and previous is not executor:
        previous.shutdown(wait=False)
    return executor


async def run_in_executor(
    executor: Executor | None, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run ``fn(*args, **kwargs)`` in ``executor`` and return its result, in the caller's context.

    ``asyncio.to_thread`` with a choice of executor, and
    ``loop.run_in_executor`` that carries context and keyword arguments:
    ``fn`` runs in a copy of the context of the awaiting task, taken when the
    call is made, so it sees that task's values while other tasks run theirs
    at once, and nothing it writes reaches the task. ``executor=None`` means
    the running loop's default executor. Any thread-based
    ``concurrent.futures.Executor`` works; process and interpreter pools raise
    ``TypeError``, since a context cannot cross into them.

    Cancelling the awaiting task stops the wait, not the call already running
    in its thread, as with ``asyncio.to_thread``. Safe to call from any number
    of tasks at once.

    Args:
        executor: A thread-based ``concurrent.futures.Executor``, or ``None``
            for the running loop's default executor; positional-only.
        fn: The callable to run; positional-only.
        *args: Its positional arguments.
        **kwargs: Its keyword arguments (any names, ``executor`` and ``fn``
            included).

    Returns:
        What ``fn`` returns, once the call in the thread is done; its
        exception is raised instead if it raised.

    Raises:
        TypeError: When ``executor`` is neither ``None`` nor an ``Executor``,
            is a process or interpreter pool, or ``fn`` is not callable.
        RuntimeError: When called outside a running event loop.
    """
    if executor is not None and not isinstance(executor, Executor):
        raise TypeError(
            f"executor must be a concurrent.futures.Executor or None, not {type(executor).__name__}"
        )
    if isinstance(executor, _NO_CONTEXT):
        raise TypeError(
            f"{type(executor).__name__} runs calls in other processes or interpreters, "
            "which a contextvars.Context cannot reach: use a thread pool"
        )
    if not callable(fn):
        raise TypeError(f"run_in_executor() fn must be callable, not {type(fn).__name__}")
    loop = asyncio.get_running_loop()
    if isinstance(executor, ContextThreadPoolExecutor):
        # Its submit() copies the caller's context already.
        call = functools.partial(fn, *args, **kwargs)
    else:
        call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await loop.run_in_executor(executor, call)
