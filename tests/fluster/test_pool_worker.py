"""The pool worker's task executor: tasks in, replies out, over one frame stream.

In process, over a socket pair: what runs in a worker process, without one.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Iterator

import pytest

from contextthreads import ContextThread
from contextthreads.fluster import FrameChannel, _pickle
from contextthreads.fluster._codec import decode_reply, encode_task
from contextthreads.fluster._pool_worker import _TaskExecutor, worker_actor_name

from . import tasks
from .support import WAIT, joined

pytest.importorskip("cloudpickle")


@contextlib.contextmanager
def executor(max_body: int = 1 << 20) -> Iterator[FrameChannel]:
    """Serve a task executor on one end of a socket pair; yield the dispatcher's end."""
    key = b"k" * 32
    left, right = socket.socketpair()
    client = FrameChannel(left, left.makefile("rb"), key, is_client=True)
    server = FrameChannel(right, right.makefile("rb"), key, is_client=False, max_body=max_body)
    serving = ContextThread(target=_TaskExecutor().serve, args=(server,), daemon=True)
    serving.start()
    try:
        client.settimeout(WAIT)
        yield client
    finally:
        client.close()
        joined(serving)
        server.close()


def run(channel: FrameChannel, payload: bytes) -> tuple[bool, Any]:
    """Send one task; return its decoded reply."""
    channel.send(payload)
    return decode_reply(channel.recv() or b"")


def test_oversized_result_comes_back_as_value_error() -> None:
    """A result too heavy for one reply frame fails its task with ValueError, and the worker's
    stream serves the next task as usual."""
    with executor(max_body=4096) as channel:
        ok, error = run(channel, _pickle.dumps((bytes, (8192,), {}, ())))
        assert not ok
        assert isinstance(error, ValueError)
        assert "more than a reply may carry (4096)" in str(error)
        assert run(channel, _pickle.dumps((bytes, (16,), {}, ()))) == (True, bytes(16))


def test_each_task_runs_with_its_values_in_a_fresh_context() -> None:
    """A task's context values are set around its own call only: neither they nor what the
    task sets itself reach the next task on the stream."""
    limit = 1 << 20
    with executor() as channel:
        writer = encode_task(tasks.set_and_read_vars, ("w1",), {}, (), limit)
        assert run(channel, writer) == (True, ("w1", "w1"))
        carried = encode_task(tasks.read_vars, (), {}, [(tasks.TENANT, "acme")], limit)
        assert run(channel, carried) == (True, ("-", "acme"))
        assert run(channel, encode_task(tasks.read_vars, (), {}, (), limit)) == (
            True,
            ("-", "<unset>"),
        )


def test_a_task_that_does_not_decode_fails_alone() -> None:
    """A frame that is not a task (here: not even a pickle) fails with the decoding error,
    and the stream serves the next task."""
    with executor() as channel:
        ok, error = run(channel, b"not a pickle")
        assert not ok
        assert isinstance(error, Exception)
        assert run(channel, encode_task(tasks.square, (4,), {}, (), 1 << 20)) == (True, 16)


def test_worker_actor_names_are_per_pool_and_index() -> None:
    """Each worker registers under a name of its own: the pool's id and its index."""
    assert worker_actor_name("ab12", 3) == "_workerpool_ab12:worker-3"
