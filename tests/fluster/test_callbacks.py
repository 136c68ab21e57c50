"""Done-callbacks of a pool's futures: on a thread of their own, in order, in their context."""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
from concurrent.futures import Future
from typing import Any, List

import pytest

from contextthreads.fluster._callbacks import CallbackThread, PoolFuture

from .support import WAIT

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("callback_test_var", default="unset")


def test_callbacks_run_on_the_callback_thread_in_order_in_their_context() -> None:
    """Callbacks of a pending future run, once it is set, on the callback thread (not the
    setter's), in the order they were added, each in the context current when it was
    added; the setter does not wait for them."""
    callbacks = CallbackThread("test-callbacks")
    future = callbacks.future()
    assert isinstance(future, PoolFuture)
    assert isinstance(future, Future)
    ran: queue.Queue[tuple[str, str, Any]] = queue.Queue()
    release = threading.Event()

    def record(name: str) -> Any:
        def callback(done: Future[Any]) -> None:
            release.wait(WAIT)
            ran.put((name, threading.current_thread().name, VAR.get()))

        return callback

    VAR.set("first")
    future.add_done_callback(record("a"))
    VAR.set("second")
    future.add_done_callback(record("b"))
    future.set_result(1)  # returns although the callbacks are blocked
    release.set()
    assert [ran.get(timeout=WAIT) for _ in range(2)] == [
        ("a", "test-callbacks", "first"),
        ("b", "test-callbacks", "second"),
    ]
    assert callbacks.drain(WAIT)


def test_a_callback_added_to_a_done_future_runs_at_once_in_the_caller() -> None:
    """As with any future, a callback added once the future is done runs at once, in the
    thread that adds it."""
    future = CallbackThread("test-callbacks").future()
    future.set_exception(KeyError("k"))
    seen: List[str] = []
    future.add_done_callback(lambda done: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name]


def test_a_failing_callback_is_logged_and_the_next_ones_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback that raises (even SystemExit) is logged as concurrent.futures logs it, and
    the callbacks after it still run; a cancelled future's callbacks run too."""
    callbacks = CallbackThread("test-callbacks")
    ran: queue.Queue[str] = queue.Queue()

    def exits(done: Future[Any]) -> None:
        raise SystemExit(1)

    with caplog.at_level(logging.ERROR, logger="concurrent.futures"):
        failing = callbacks.future()
        failing.add_done_callback(exits)
        failing.add_done_callback(lambda done: ran.put("after"))
        failing.set_result(None)
        cancelled = callbacks.future()
        cancelled.add_done_callback(lambda done: ran.put(f"cancelled={done.cancelled()}"))
        assert cancelled.cancel()
        assert [ran.get(timeout=WAIT) for _ in range(2)] == ["after", "cancelled=True"]
        assert callbacks.drain(WAIT)
    assert "exception calling callback" in caplog.text


def test_the_thread_comes_back_after_idling_out() -> None:
    """With no idle time at all, the thread leaves as soon as it has nothing to do, and a
    later callback starts it again: nothing is lost either way."""
    callbacks = CallbackThread("test-callbacks")
    callbacks.idle = 0.0
    ran: queue.Queue[int] = queue.Queue()
    for index in range(20):
        future = callbacks.future()
        future.add_done_callback(lambda done: ran.put(done.result()))
        future.set_result(index)
    assert sorted(ran.get(timeout=WAIT) for _ in range(20)) == list(range(20))
    assert callbacks.drain(WAIT)


def test_drain_gives_up_after_its_timeout() -> None:
    """drain() returns False while a callback is still running once its time is up."""
    callbacks = CallbackThread("test-callbacks")
    entered, release = threading.Event(), threading.Event()

    def blocks(done: Future[Any]) -> None:
        entered.set()
        release.wait(WAIT)

    future = callbacks.future()
    future.add_done_callback(blocks)
    future.set_result(None)
    assert entered.wait(WAIT)
    try:
        assert not callbacks.drain(0.01)
    finally:
        release.set()
    assert callbacks.drain(WAIT)
