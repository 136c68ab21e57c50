"""Run the spawn trees of ``strategies.py`` through the real contextthreads mechanisms.

``launch()`` hands a callable to one mechanism and returns a handle whose
``wait()`` returns its result or re-raises its exception in the caller.
``run_tree()`` walks a tree of ``Spawn``: every child checks the values it
sees against its parent's values at the capture point, writes its own,
spawns its children, and checks that nothing came back from them.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any, Callable, Iterable

from bounds import LONG_WAIT
from strategies import CAPTURED_AT_PREPARE, Snapshot, Spawn, apply, snapshot

from contextthreads import ContextThread, ContextThreadPoolExecutor, ContextTimer, bind


class Handle:
    """The outcome of one launched callable: ``wait()`` returns it or re-raises its error."""

    def __init__(self, wait: Callable[[], Any]) -> None:
        self._wait = wait

    def wait(self) -> Any:
        """Wait (bounded) for the callable and return its result."""
        return self._wait()


def _thread_handle(thread: threading.Thread, box: Future[Any]) -> Handle:
    def wait() -> Any:
        thread.join(LONG_WAIT)
        assert not thread.is_alive(), f"{thread!r} did not finish"
        return box.result(timeout=0)

    return Handle(wait)


def _boxed(fn: Callable[[], Any], box: Future[Any]) -> Callable[[], None]:
    def run() -> None:
        try:
            box.set_result(fn())
        except BaseException as error:
            box.set_exception(error)

    return run


def prepare(
    mechanism: str, fn: Callable[[], Any], executor: ContextThreadPoolExecutor
) -> Callable[[], Handle]:
    """Prepare ``fn`` for ``mechanism`` and return the callable that launches it.

    Preparing builds the Thread or Timer, or calls ``bind()``; launching
    starts it, submits it, maps it over one item, or calls the bound callable
    in a plain ``threading.Thread``. ``executor`` serves ``submit`` and ``map``.
    """
    box: Future[Any] = Future()
    if mechanism == "thread":
        thread: threading.Thread = ContextThread(target=_boxed(fn, box))
    elif mechanism == "timer":
        thread = ContextTimer(0, _boxed(fn, box))
    elif mechanism == "bind":
        thread = threading.Thread(target=_boxed(bind(fn), box))
    elif mechanism == "submit":
        return lambda: Handle(executor.submit(fn).result)
    elif mechanism == "map":

        def launch_map() -> Handle:
            results = executor.map(lambda _item: fn(), [None], timeout=LONG_WAIT)
            return Handle(lambda: next(results))

        return launch_map
    else:
        raise ValueError(f"unknown mechanism {mechanism!r}")

    def launch_thread() -> Handle:
        thread.start()
        return _thread_handle(thread, box)

    return launch_thread


def launch(mechanism: str, fn: Callable[[], Any], executor: ContextThreadPoolExecutor) -> Handle:
    """Prepare and launch ``fn`` through ``mechanism`` at once."""
    return prepare(mechanism, fn, executor)()


def _child(spawn: Spawn, expected: Snapshot, executor: ContextThreadPoolExecutor) -> None:
    seen = snapshot()
    assert seen == expected, f"{spawn.mechanism} child saw {seen}, expected {expected}"
    apply(spawn.writes)
    run_tree(spawn.children, executor)


def run_tree(tree: Iterable[Spawn], executor: ContextThreadPoolExecutor) -> None:
    """Spawn every child of ``tree`` from the current context, then wait for them all.

    Children run concurrently, so siblings' writes race; each child asserts
    what it sees, and after they all finish the current context must be
    exactly as it was when the last one was launched. ``executor`` must have
    a worker for every ``submit``/``map`` spawn of the tree, since parents
    block on their children.
    """
    handles = []
    for spawn in tree:
        apply(spawn.before_prepare)
        expected: Snapshot = {}
        body = lambda s=spawn, e=expected: _child(s, e, executor)  # noqa: E731
        launch_it = prepare(spawn.mechanism, body, executor)
        if spawn.mechanism in CAPTURED_AT_PREPARE:
            expected.update(snapshot())
        apply(spawn.before_launch)
        if spawn.mechanism not in CAPTURED_AT_PREPARE:
            expected.update(snapshot())
        handles.append(launch_it())
    mine = snapshot()
    for handle in handles:
        handle.wait()
    after = snapshot()
    assert after == mine, f"children's writes reached their parent: {after}, expected {mine}"
