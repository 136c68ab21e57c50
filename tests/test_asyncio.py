"""use_context_executor() and run_in_executor(): context from asyncio tasks into threads."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Awaitable, Callable

import pytest
from bounds import WAIT
from conftest import collect_garbage

from contextthreads import ContextThreadPoolExecutor
from contextthreads._asyncio import run_in_executor, use_context_executor

TASKS = 4

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
payload: contextvars.ContextVar[object] = contextvars.ContextVar("payload")


class Token:
    """A weakly referenceable value to put in a ContextVar."""


def _rendezvous() -> Callable[[], tuple[str, str]]:
    """Return a blocking call that waits for TASKS threads to be inside it at once."""
    barrier = threading.Barrier(TASKS)

    def call() -> tuple[str, str]:
        seen = request_id.get()
        # All calls are in flight together: each must still see its own task's value.
        barrier.wait(WAIT)
        request_id.set("written-in-thread")
        return seen, threading.current_thread().name

    return call


async def _each_task_sees_its_own(
    dispatch: Callable[[Callable[[], tuple[str, str]]], Awaitable[tuple[str, str]]],
) -> list[tuple[str, str, str]]:
    """Run TASKS tasks at once, each with its own value, each dispatching one blocking call."""
    call = _rendezvous()

    async def one(index: int) -> tuple[str, str, str]:
        request_id.set(f"task-{index}")
        seen, thread_name = await dispatch(call)
        # The thread's write never comes back to the task.
        return f"task-{index}", seen, request_id.get() + "|" + thread_name

    return list(await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(TASKS))), WAIT))


def _check(results: list[tuple[str, str, str]], thread_prefix: str | None = None) -> None:
    for expected, seen, after in results:
        assert seen == expected
        task_value, _, thread_name = after.partition("|")
        assert task_value == expected
        if thread_prefix is not None:
            assert thread_name.startswith(thread_prefix), thread_name


# --------------------------------------------------------------------------
# use_context_executor


def test_run_in_executor_none_after_setup_sees_each_task_context() -> None:
    """After use_context_executor(), loop.run_in_executor(None, fn) runs in its task's context."""

    async def main() -> list[tuple[str, str, str]]:
        executor = use_context_executor(max_workers=TASKS)
        assert isinstance(executor, ContextThreadPoolExecutor)
        loop = asyncio.get_running_loop()
        return await _each_task_sees_its_own(lambda call: loop.run_in_executor(None, call))

    _check(asyncio.run(main()), thread_prefix="asyncio_")


def test_to_thread_after_setup_sees_each_task_context() -> None:
    """asyncio.to_thread keeps working on the new default executor, each task with its own."""

    async def main() -> list[tuple[str, str, str]]:
        use_context_executor(max_workers=TASKS)
        return await _each_task_sees_its_own(asyncio.to_thread)

    _check(asyncio.run(main()), thread_prefix="asyncio_")


@pytest.mark.skipif(
    bool(getattr(sys.flags, "thread_inherit_context", False)),
    reason="under thread_inherit_context a worker inherits the context of the task that made it",
)
def test_without_setup_run_in_executor_loses_context() -> None:
    """The problem being fixed: the stdlib's default executor runs fn in its worker's context."""

    async def main() -> str:
        request_id.set("lost")
        return await asyncio.get_running_loop().run_in_executor(None, request_id.get)

    assert asyncio.run(main()) == "none"


def test_setup_with_loop_argument_before_it_runs() -> None:
    """use_context_executor(loop) works on a loop that is not running yet."""
    loop = asyncio.new_event_loop()
    try:
        executor = use_context_executor(loop, max_workers=TASKS)

        async def main() -> list[tuple[str, str, str]]:
            return await _each_task_sees_its_own(
                lambda call: asyncio.get_running_loop().run_in_executor(None, call)
            )

        _check(loop.run_until_complete(main()))
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(print)


def test_setup_outside_running_loop_needs_a_loop() -> None:
    """With no loop argument and no running loop, use_context_executor() raises RuntimeError."""
    with pytest.raises(RuntimeError, match="no running event loop"):
        use_context_executor()


def test_setup_rejects_bad_arguments() -> None:
    """A non-loop, a closed loop or a bad max_workers is a clear error and changes nothing."""
    with pytest.raises(TypeError, match="asyncio event loop"):
        use_context_executor(object())  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        use_context_executor(loop)

    async def main() -> None:
        first = use_context_executor(max_workers=1)
        with pytest.raises(ValueError, match="max_workers"):
            use_context_executor(max_workers=0)
        # The previous default is still the one in use, and still open.
        thread_name = await asyncio.get_running_loop().run_in_executor(
            None, lambda: threading.current_thread().name
        )
        assert thread_name.startswith("asyncio_")
        first.submit(lambda: None).result(timeout=WAIT)

    asyncio.run(main())


def test_setup_replaces_and_shuts_down_previous_default() -> None:
    """A second call replaces the default and shuts the first down; asyncio.run() closes it."""

    async def main() -> tuple[ContextThreadPoolExecutor, ContextThreadPoolExecutor]:
        first = use_context_executor(max_workers=2)
        await asyncio.get_running_loop().run_in_executor(None, request_id.get)
        second = use_context_executor(max_workers=3)
        assert second is not first
        with pytest.raises(RuntimeError, match="after shutdown"):
            first.submit(print)
        request_id.set("second")
        assert await asyncio.get_running_loop().run_in_executor(None, request_id.get) == "second"
        return first, second

    _, second = asyncio.run(main())
    # asyncio.run() shut the current default executor down on its way out.
    with pytest.raises(RuntimeError, match="after shutdown"):
        second.submit(print)


def test_idle_default_workers_pin_no_task_value() -> None:
    """The default executor's workers start empty: a finished task's value is not kept alive."""

    async def holder() -> weakref.ref[Token]:
        token = Token()
        payload.set(token)
        await asyncio.get_running_loop().run_in_executor(None, payload.get)
        return weakref.ref(token)

    async def main() -> weakref.ref[Token]:
        use_context_executor(max_workers=1)
        # A task runs in its own copy of the context, dropped when the task is done.
        ref = await asyncio.ensure_future(holder())
        # One worker, FIFO: once this returns the first call's work item is gone.
        await asyncio.get_running_loop().run_in_executor(None, lambda: None)
        return ref

    ref = asyncio.run(main())
    collect_garbage()
    assert ref() is None


# --------------------------------------------------------------------------
# run_in_executor


def test_run_in_executor_plain_pool_sees_each_task_context() -> None:
    """run_in_executor() on a plain ThreadPoolExecutor runs each call in its task's context."""
    with ThreadPoolExecutor(max_workers=TASKS, thread_name_prefix="plain") as pool:

        async def main() -> list[tuple[str, str, str]]:
            return await _each_task_sees_its_own(lambda call: run_in_executor(pool, call))

        _check(asyncio.run(main()), thread_prefix="plain")


def test_run_in_executor_context_pool_sees_each_task_context() -> None:
    """run_in_executor() on a ContextThreadPoolExecutor runs each call in its task's context."""
    with ContextThreadPoolExecutor(max_workers=TASKS, thread_name_prefix="ours") as pool:

        async def main() -> list[tuple[str, str, str]]:
            return await _each_task_sees_its_own(lambda call: run_in_executor(pool, call))

        _check(asyncio.run(main()), thread_prefix="ours")


def test_run_in_executor_none_uses_default_executor() -> None:
    """run_in_executor(None, ...) uses the loop's default executor and still carries context."""

    async def main() -> list[tuple[str, str, str]]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=TASKS, thread_name_prefix="dflt"))
        return await _each_task_sees_its_own(lambda call: run_in_executor(None, call))

    _check(asyncio.run(main()), thread_prefix="dflt")


def test_run_in_executor_passes_args_kwargs_and_errors() -> None:
    """Positional and keyword arguments reach fn; its exception is raised in the awaiting task."""

    def combine(a: int, b: int, *, sep: str) -> str:
        return f"{a}{sep}{b}{sep}{request_id.get()}"

    def boom(message: str) -> None:
        raise LookupError(message)

    async def main() -> str:
        request_id.set("ctx")
        with ThreadPoolExecutor(max_workers=1) as pool:
            with pytest.raises(LookupError, match="from thread"):
                await run_in_executor(pool, boom, "from thread")
            return await run_in_executor(pool, combine, 1, 2, sep="-")

    assert asyncio.run(main()) == "1-2-ctx"


def test_run_in_executor_rejects_bad_input() -> None:
    """A non-executor, a process pool or a non-callable raise TypeError with a clear message."""

    async def main() -> None:
        with pytest.raises(TypeError, match=r"concurrent\.futures\.Executor or None"):
            await run_in_executor(object(), print)  # type: ignore[arg-type]
        processes = ProcessPoolExecutor(max_workers=1)
        try:
            with pytest.raises(TypeError, match="ProcessPoolExecutor runs calls in other"):
                await run_in_executor(processes, print)
        finally:
            processes.shutdown()
        with pytest.raises(TypeError, match="must be callable, not int"):
            await run_in_executor(None, 42)  # type: ignore[arg-type]

    asyncio.run(main())


def test_run_in_executor_cancel_stops_waiting_only() -> None:
    """Cancelling the awaiting task raises CancelledError there; the call still runs to the end."""
    started = threading.Event()
    release = threading.Event()
    finished = threading.Event()

    def blocking() -> None:
        started.set()
        release.wait(WAIT)
        finished.set()

    async def main() -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            task = asyncio.ensure_future(run_in_executor(pool, blocking))
            assert await run_in_executor(pool, started.wait, WAIT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            release.set()
        assert finished.is_set()

    asyncio.run(main())
