"""The worker side of a WorkerPool: the task-executor actor, and the job that serves it."""

from __future__ import annotations

import contextvars
import logging
import os
import threading
from typing import Any

from ._actor import ActorServer
from ._codec import decode_task, encode_error, encode_result
from ._context import ENV_ADVERTISE_HOST, ENV_BIND_HOST, fluster_ctx
from ._controller import ControllerClient
from ._stream import FrameChannel

__all__ = ("serve_worker", "worker_actor_name")

logger = logging.getLogger("contextthreads.fluster")


def worker_actor_name(pool_id: str, index: int) -> str:
    """Return the name the worker ``index`` of pool ``pool_id`` registers (before namespacing)."""
    return f"_workerpool_{pool_id}:worker-{index}"


def _call(fn: Any, args: Any, kwargs: Any, values: Any) -> Any:
    for var, value in values:
        var.set(value)
    return fn(*args, **kwargs)


class _TaskExecutor:
    """The actor each worker hosts: run pickled callables (thread-safe, stateless)."""

    def serve(self, channel: FrameChannel) -> None:
        """Run the tasks arriving on ``channel`` one at a time, answering each with its outcome.

        Each task (``_codec.encode_task()``) runs with its context values set
        in a fresh copy of this thread's context. The dispatcher may send the
        next task before this one's answer; it waits in the connection.
        Returns when the dispatcher closes the stream.
        """
        while True:
            payload = channel.recv()
            if payload is None:
                return
            try:
                fn, args, kwargs, values = decode_task(payload)
                # Each task in its own context: one task's values never reach the next.
                value = contextvars.copy_context().run(_call, fn, args, kwargs, values)
            except BaseException as exc:
                reply = encode_error(exc)
            else:
                reply = encode_result(value, fn, channel.max_body)
            channel.send(reply)

    def ping(self) -> int:
        """Return this worker's process id."""
        return os.getpid()


def serve_worker(pool_id: str, index: int) -> None:
    """Run a pool worker: serve a task-executor actor and register it; return never.

    The job entrypoint of every pool worker, run by ``python -m
    contextthreads.fluster.worker`` with the worker job's FlusterContext.
    """
    ctx = fluster_ctx()
    name = worker_actor_name(pool_id, index)
    advertise = os.environ.get(ENV_ADVERTISE_HOST, "127.0.0.1")
    server = ActorServer(
        ctx.secret, os.environ.get(ENV_BIND_HOST, advertise), advertise_host=advertise
    )
    server.register(name, _TaskExecutor())
    server.start()
    ControllerClient(ctx.controller_address, ctx.secret).register(
        f"{ctx.namespace}/{name}", server.address, ctx.job_id, {"pid": str(os.getpid())}
    )
    logger.info("worker %s of job %s serving at %s", name, ctx.job_id, server.address)
    threading.Event().wait()  # until the cluster terminates the job
