"""WorkerDispatcher: the thread that feeds one worker of a WorkerPool."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING, Callable, ClassVar

from .._thread import ContextThread
from ._actor import ActorClient
from ._codec import decode_reply
from ._pool_state import PoolState
from ._pool_types import STOP, Task, Worker
from ._wire import RpcConnectionError, RpcError, as_rpc_error

if TYPE_CHECKING:
    from ._cluster import FlusterClient
    from ._resolver import Resolver
    from ._stream import FrameChannel

__all__ = ("WorkerDispatcher",)

logger = logging.getLogger("contextthreads.fluster")


class WorkerDispatcher:
    """Feed one worker: find its endpoint, then stream it tasks from the pool's queue.

    A ``WorkerPool`` makes one per worker, through its ``dispatcher_class``:
    subclass it to change how a worker is fed, and name the subclass there.
    It runs on a ``thread_class`` thread (``ContextThread`` unless a subclass
    says otherwise), started in the context of whoever calls ``start()``: the
    ``resolver`` reads the FlusterContext from there, so on a thread that does
    not carry the context it raises ``RuntimeError``.

    Tasks go over one frame stream signed with ``secret`` to the worker,
    which runs them one at a time. While a task runs, the next may already
    wait in the connection (up to ``max_in_flight`` in all), but only when no
    other worker is idle and it is small, so the worker never waits for the
    network between tasks. Every change it makes goes through ``state``, the
    pool's, under the pool's lock; ``start()`` and ``join()`` may be called
    from any thread.

    Args:
        state: The pool's state machine, which the pool hands over.
        worker: The pool's record of the worker to feed.
        client: The cluster client, which stops a failed worker's job.
        resolver: Finds the worker's endpoint by its actor name.
        secret: The cluster secret the stream is signed with.
        timeout: Seconds each task's answer may take; the worker must also
            register within the state's ``registration_timeout``.
        ssl_context: The client context ``https://`` workers are reached with.
    """

    thread_class: ClassVar[Callable[..., threading.Thread]] = ContextThread
    #: Tasks handed to one worker at once, the running one and one waiting.
    max_in_flight: ClassVar[int] = 2
    #: Largest serialized task sent to a busy worker; bigger ones wait for an idle one.
    max_waiting_size: ClassVar[int] = 32 * 1024
    #: How long an idle dispatcher waits for a task before it checks on its worker's job.
    idle_check: ClassVar[float] = 0.5

    def __init__(
        self,
        state: PoolState,
        worker: Worker,
        *,
        client: FlusterClient,
        resolver: Resolver,
        secret: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._state = state
        self._worker = worker
        self._client = client
        self._resolver = resolver
        self._secret = secret
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._channel: FrameChannel | None = None
        # When the oldest task in flight started to count against the timeout.
        self._clock = 0.0
        self._thread = self.thread_class(
            target=self._run,
            name=f"fluster-dispatch-{state.pool_id}-{worker.worker_id}",
            daemon=True,
        )

    def start(self) -> None:
        """Start the dispatch thread in a copy of the caller's context.

        Raises:
            RuntimeError: If it was started before.
        """
        self._thread.start()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end; return whether it did.

        Args:
            timeout: The most seconds to wait.
        """
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            if self._discover():
                self._dispatch()
        except BaseException as exc:
            logger.exception("dispatcher for %s crashed", self._worker.worker_id)
            self._fail(f"dispatcher crashed: {exc!r}")
            raise
        finally:
            if self._channel is not None:
                self._channel.close()

    def _dispatch(self) -> None:
        state, worker = self._state, self._worker
        while True:
            if not worker.in_flight:
                task = state.next_task(worker, self.idle_check)
                if task is STOP:
                    return
                if task is None:
                    code = self._exit_code()
                    if code is not None:
                        self._fail(f"job exited with code {code}")
                        return
                    continue
                if self._channel is not None and self._channel.peer_closed():
                    # The worker hung up while idle (gone, most likely): the task has not
                    # reached it, and goes to a new stream, or back to the queue for free.
                    self._channel.close()
                    self._channel = None
                self._clock = time.monotonic()
            else:
                task = None
                if len(worker.in_flight) < self.max_in_flight:
                    task = state.next_task_nowait(worker, self.max_waiting_size)
                if task is None:
                    # Nothing more to hand over: wait for the oldest answer.
                    if not self._receive():
                        return
                    continue
            if not self._send(task):
                return

    def _discover(self) -> bool:
        name, stopping = self._worker.worker_name, self._state.stopping
        delay = 0.02
        while not stopping.is_set():
            if self._state.registration_expired(self._worker, time.monotonic()):
                self._failed(str(self._worker.error), "", 0)
                return False
            try:
                result = self._resolver.resolve(name)
            except RpcError as exc:
                logger.debug("resolving %s: %s (will retry)", name, exc)
            except Exception as exc:
                self._fail(f"resolving {name!r} failed: {exc!r}")
                return False
            else:
                if not result.is_empty:
                    endpoint = result.first()
                    pid = endpoint.metadata.get("pid", "")
                    ready = self._state.worker_ready(
                        self._worker, endpoint.url, int(pid) if pid.isdigit() else None
                    )
                    if ready:
                        logger.info("pool %s: %s ready at %s", *self._names(), endpoint.url)
                    return ready
            code = self._exit_code()
            if code is not None:
                self._fail(f"job exited with code {code} before registering")
                return False
            stopping.wait(delay)
            delay = min(delay * 2, 0.5)
        return False

    def _send(self, task: Task) -> bool:
        # Returns whether the worker is still usable; if not, its tasks are settled.
        worker = self._worker
        if self._channel is None:
            assert worker.endpoint_url is not None
            try:
                self._channel = ActorClient(
                    worker.endpoint_url,
                    worker.worker_name,
                    secret=self._secret,
                    timeout=self._timeout,
                    ssl_context=self._ssl_context,
                ).stream("serve")
            except Exception as exc:  # RpcError: the worker cannot be reached
                return self._lost(exc, delivered=False)
        try:
            # A send blocks only while the worker, busy with a task, reads nothing.
            self._channel.settimeout(self._timeout)
            self._channel.send(task.payload)
        except Exception as exc:  # OSError: the worker is gone
            return self._lost(exc)
        return True

    def _receive(self) -> bool:
        # Settles the oldest task in flight; returns whether the worker is still usable.
        assert self._channel is not None
        try:
            remaining = self._clock + self._timeout - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("timed out")
            self._channel.settimeout(remaining)
            reply = self._channel.recv()
            if reply is None:
                raise RpcConnectionError(f"{self._worker.endpoint_url} closed the connection")
        except Exception as exc:
            return self._lost(exc)
        # The next task in flight has been waiting in the connection; it runs from now.
        self._clock = time.monotonic()
        try:
            ok, value = decode_reply(reply)
        except BaseException as exc:  # the result or exception does not unpickle here
            ok, value = False, exc
        self._state.task_finished(self._worker, ok, value)
        return True

    def _lost(self, exc: Exception, *, delivered: bool = True) -> bool:
        # The worker cannot be used any more: fail it, settling what it held.
        error = as_rpc_error(exc, str(self._worker.endpoint_url), self._timeout)
        self._fail(f"{type(error).__name__}: {error}", delivered=delivered)
        return False

    def _names(self) -> tuple[str, str]:
        return self._state.pool_id, self._worker.worker_id

    def _fail(self, reason: str, *, delivered: bool = True) -> None:
        # Fail the worker (settling its tasks), then stop its job, whose state is unknown.
        held = ", ".join(task.task_id for task in self._worker.in_flight)
        requeued = self._state.worker_failed(self._worker, reason, delivered=delivered)
        if requeued is not None:  # else it had failed already
            self._failed(reason, held, requeued)

    def _failed(self, reason: str, held: str, requeued: int) -> None:
        # Say what a failure of the worker cost, and stop its job.
        if held:
            message = "pool %s: %s failed holding %s (%s); %d re-queued"
            logger.warning(message, *self._names(), held, reason, requeued)
        else:
            logger.warning("pool %s: %s failed: %s", *self._names(), reason)
        if self._state.stopping.is_set():
            return  # shutdown terminates every job itself
        try:
            self._client.terminate(self._worker.job_id)
        except Exception:
            logger.debug("terminating %s failed", self._worker.job_id, exc_info=True)

    def _exit_code(self) -> int | None:
        try:
            return self._client.poll(self._worker.job_id)
        except KeyError:
            return None
