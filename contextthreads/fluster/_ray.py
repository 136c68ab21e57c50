"""RayLauncher: run each Fluster job as the child process of a Ray actor that holds its resources.

One actor per job, placed by Ray with the resources and scheduling options
the launcher was given, runs the worker command as a subprocess and lives
exactly as long as it: the process is killed with the actor (``ray.kill``,
a node failure), and the actor is killed once the process ends, which frees
its resources for the next pending one. ``launch()`` does not wait for Ray
to place the actor. Ray is imported when a launcher is created: install it
with ``pip install 'contextthreads[ray]'``.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

from ._context import ENV_ADVERTISE_HOST
from ._launcher import JobHandle, worker_pythonpath

__all__ = ("RayJob", "RayLauncher")

logger = logging.getLogger("contextthreads.fluster.ray")

_PR_SET_PDEATHSIG = 1


def _ray() -> Any:
    # Ray is optional, and imported only once a RayLauncher is made (or, in an
    # actor, is already there); it is typed loosely, hence Any.
    import ray

    return ray


def _die_with_parent() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` that has Linux SIGKILL the child when its parent thread goes.

    That thread is the actor's, blocked in ``wait()`` for the child until then.
    Elsewhere there is no such thing: None.
    """
    if not sys.platform.startswith("linux"):
        return None
    # Looked up here, not in the child between fork and exec, where only the call is safe.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


class _WorkerActor:
    """The actor behind one job: runs its command and holds its resources meanwhile.

    Created by ``RayLauncher`` as a threaded actor, so that ``info()`` and
    ``terminate()`` answer while ``run()`` waits for the process and ``park()``
    for the actor's end.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._started = threading.Event()
        self._cancelled = False
        self._lock = threading.Lock()

    def run(self, command: Sequence[str], env: Mapping[str, str]) -> int:
        """Run ``command`` with ``env`` over this process's environment; return its exit code."""
        ray = _ray()
        full_env = dict(os.environ)
        full_env.update(env)
        # The address Ray knows this node by: the pool reaches the worker there.
        full_env.setdefault(ENV_ADVERTISE_HOST, ray.util.get_node_ip_address())
        with self._lock:
            if self._cancelled:
                self._started.set()
                return -signal.SIGTERM
            self._process = subprocess.Popen(
                list(command),
                env=full_env,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent(),
            )
            self._started.set()
        return self._process.wait()

    def info(self, timeout: float) -> dict[str, Any]:
        """Return the node and pid of the job's process, once it started (None if not yet)."""
        ray = _ray()
        self._started.wait(timeout)
        process = self._process
        context = ray.get_runtime_context()
        return {
            "node_id": context.get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
            "pid": process.pid if process is not None else None,
        }

    def park(self) -> None:
        """Never return: the caller learns of the actor's death when this call fails."""
        threading.Event().wait()

    def terminate(self, grace: float) -> None:
        """SIGTERM the process, SIGKILL it after ``grace`` seconds; return once it is gone."""
        with self._lock:
            self._cancelled = True
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(grace)


class RayJob:
    """A Fluster job running under a Ray actor. Thread-safe.

    ``pid`` is None (the process may be on another node); ``actor`` is the
    Ray actor handle, ``info()`` tells where the process runs, and
    ``wait_released()`` waits until Ray has ended the actor.
    """

    def __init__(self, job_id: str, actor: Any, *, done: Any, placed: Any, parked: Any) -> None:
        self.job_id = job_id
        self.actor = actor
        self._done: concurrent.futures.Future[int] = done.future()
        self._done.add_done_callback(self._release)
        # Ready once Ray has placed the actor and it answers.
        self._placed = placed
        # Never answered: ready (with an error) once the actor is dead.
        self._parked = parked

    def __repr__(self) -> str:
        return f"RayJob(job_id={self.job_id!r}, done={self._done.done()})"

    @property
    def pid(self) -> int | None:
        """Return None: the job's process belongs to a Ray worker, maybe on another node."""
        return None

    def info(self, timeout: float) -> dict[str, Any]:
        """Return ``{"node_id", "node_ip", "pid"}`` of the running job; wait up to ``timeout``.

        Raises ``TimeoutError`` if Ray has not started the actor by then.
        """
        ray = _ray()
        try:
            info: dict[str, Any] = ray.get(self.actor.info.remote(timeout), timeout=timeout)
        except ray.exceptions.GetTimeoutError as exc:
            raise TimeoutError(f"job {self.job_id} not started after {timeout}s") from exc
        return info

    def poll(self) -> int | None:
        """Return the exit code if the job ended (minus SIGKILL if its actor died), else None."""
        return self._code() if self._done.done() else None

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the job to end; return its exit code or None."""
        concurrent.futures.wait([self._done], timeout)
        return self.poll()

    def terminate(self, grace: float) -> None:
        """Stop the job: SIGTERM, SIGKILL after ``grace`` seconds; one not placed yet is dropped.

        Returns once the job ended and its actor is gone, bounded by a few
        times ``grace``.
        """
        ray = _ray()
        placed, _ = ray.wait([self._placed], timeout=0)
        # An actor Ray has not placed yet would answer nothing: kill it outright.
        if placed and not self._done.done():
            self.actor.terminate.remote(grace)
            self.wait(grace + 1)
        ray.kill(self.actor, no_restart=True)  # a no-op for an actor already gone
        self.wait(grace)
        self.wait_released(grace)

    def wait_released(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for Ray to end the job's actor (which frees its
        resources, and follows the job's end); return whether it has."""
        ready, _ = _ray().wait([self._parked], timeout=timeout)
        return bool(ready)

    def _code(self) -> int:
        try:
            return self._done.result(0)
        except Exception as exc:  # RayActorError and kin: the actor is gone, and the job with it
            logger.debug("job %s: actor ended: %s", self.job_id, exc)
            return -signal.SIGKILL

    def _release(self, _: object) -> None:
        # The job ended: end its actor too, freeing its resources. Ray calls this on
        # one of its own threads, where calling back into Ray is not safe.
        threading.Thread(
            target=_ray().kill, args=(self.actor,), kwargs={"no_restart": True}, daemon=True
        ).start()


class RayLauncher:
    """Launch each Fluster job under a Ray actor of its own; a ``JobLauncher`` for ``LocalCluster``.

    Each actor asks for ``num_cpus`` (default 1), ``num_gpus``, ``memory``
    (bytes) and custom ``resources``, and is placed with
    ``scheduling_strategy`` (``"SPREAD"``, a ``NodeAffinitySchedulingStrategy``,
    a ``PlacementGroupSchedulingStrategy``...); ``options`` go to
    ``.options()`` as given (``runtime_env``, ``label_selector``...). The
    job's environment, secret included, travels as an argument of the
    actor's ``run`` call, never in a command line; its ``PYTHONPATH`` is this
    process's ``sys.path``, for code pickled by reference on a shared
    filesystem. Connect to the cluster with ``ray.init(address=...)``
    before launching. Thread-safe.

    Raises ``ImportError`` at once if Ray is not installed.
    """

    def __init__(
        self,
        *,
        num_cpus: float = 1,
        num_gpus: float = 0,
        memory: int | None = None,
        resources: Mapping[str, float] | None = None,
        scheduling_strategy: Any = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        try:
            ray = _ray()
        except ImportError as exc:
            raise ImportError("RayLauncher needs Ray: pip install 'contextthreads[ray]'") from exc
        actor_options: dict[str, Any] = {"num_cpus": num_cpus, "num_gpus": num_gpus}
        if memory is not None:
            actor_options["memory"] = memory
        if resources:
            actor_options["resources"] = dict(resources)
        if scheduling_strategy is not None:
            actor_options["scheduling_strategy"] = scheduling_strategy
        actor_options.update(options or {})
        # Threads: run() and park() block; info() and terminate() must still answer.
        actor_options.setdefault("max_concurrency", 8)
        self._actor_class: Any = ray.remote(_WorkerActor)
        self._options = actor_options

    def __repr__(self) -> str:
        return f"RayLauncher(options={self._options!r})"

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        """Create the job's actor and start ``command`` in it; return at once.

        Raises ``RuntimeError`` if this process is not connected to Ray.
        """
        if not _ray().is_initialized():
            raise RuntimeError(
                "RayLauncher: not connected to a Ray cluster; call ray.init(address=...) first"
            )
        full_env = {"PYTHONPATH": worker_pythonpath(), **env}
        actor = self._actor_class.options(**self._options).remote()
        handle = RayJob(
            job_id,
            actor,
            done=actor.run.remote(list(command), full_env),
            placed=actor.info.remote(0),
            parked=actor.park.remote(),
        )
        logger.debug("launched job %s as Ray actor %s", job_id, actor)
        return handle
