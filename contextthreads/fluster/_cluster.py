"""LocalCluster: an in-process controller plus jobs launched as real worker processes.

Every job runs ``python -m contextthreads.fluster.worker``, which reads its
FlusterContext from the environment (the secret never goes on a command line),
fetches its entrypoint from the controller and runs it. Launching sits behind
``JobLauncher``, so something other than local subprocesses (ssh, a batch
system) can run the same command on other hosts.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from . import _pickle
from ._context import FlusterContext, check_job_name, fluster_ctx
from ._controller import Controller
from ._launcher import TERMINATE_GRACE, JobHandle, JobLauncher, LocalProcessLauncher, worker_command
from ._resolver import ClusterResolver

__all__ = ("Entrypoint", "FlusterClient", "LocalCluster")


@dataclass(frozen=True)
class Entrypoint:
    """What a job runs: ``callable(*args, **kwargs)``, shipped to the worker with cloudpickle."""

    callable: Callable[..., object]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class LocalCluster:
    """Run a controller in this process and jobs as worker processes on this host.

    Use it as a context manager: entering starts the controller (on
    ``host``, 127.0.0.1 by default, on a free port unless ``port`` is given),
    leaving terminates every job still running and stops the controller. The
    secret is generated unless given; it is never shown in ``repr()``.

    To reach workers on other hosts, bind ``host="0.0.0.0"``, give the
    ``advertise_host`` they reach this one by, a ``launcher`` that runs the
    worker command there, and ``python``, the interpreter path on those hosts
    (see ``contextthreads.fluster.worker``). Thread-safe.
    """

    def __init__(
        self,
        *,
        secret: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise_host: str | None = None,
        launcher: JobLauncher | None = None,
        python: str | None = None,
    ) -> None:
        self.secret = secret or secrets.token_hex(32)
        self._controller = Controller(self.secret, host, port, advertise_host=advertise_host)
        self._launcher: JobLauncher = launcher or LocalProcessLauncher()
        self._command = worker_command(python)
        self._jobs: dict[str, JobHandle] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._started = False

    def __repr__(self) -> str:
        return f"LocalCluster(address={self.address!r}, jobs={len(self._jobs)})"

    @property
    def address(self) -> str:
        """Return the controller's ``http://host:port``."""
        return self._controller.address

    @property
    def controller(self) -> Controller:
        """Return the in-process controller."""
        return self._controller

    def start(self) -> LocalCluster:
        """Start serving the controller; return self."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this LocalCluster is closed")
            if not self._started:
                self._controller.start()
                self._started = True
        return self

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Terminate every job, then stop the controller. Bounded by the jobs' grace time."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            jobs = list(self._jobs.items())
        threads = [
            threading.Thread(target=handle.terminate, args=(TERMINATE_GRACE,), daemon=True)
            for _, handle in jobs
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TERMINATE_GRACE * 2 + 1)
        self._controller.close()

    def context(self, job_id: str = "root") -> FlusterContext:
        """Return the FlusterContext of a job called ``job_id`` in this cluster (a root job)."""
        return FlusterContext(job_id=job_id, controller_address=self.address, secret=self.secret)

    def client(self) -> FlusterClient:
        """Return a client that submits jobs to this cluster."""
        return FlusterClient(self)

    def launch(self, ctx: FlusterContext, spec: bytes) -> None:
        """Store ``spec`` for ``ctx.job_id`` and start its worker. Use ``FlusterClient.submit``."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this LocalCluster is closed")
            old = self._jobs.get(ctx.job_id)
            if old is not None and old.poll() is None:
                raise ValueError(f"job {ctx.job_id!r} is already running")
            self._controller.put_job(ctx.job_id, spec)
            self._jobs[ctx.job_id] = self._launcher.launch(ctx.job_id, self._command, ctx.to_env())

    def job(self, job_id: str) -> JobHandle:
        """Return the handle of a job; raise ``KeyError`` if it was never submitted."""
        with self._lock:
            return self._jobs[job_id]

    def terminate(self, job_id: str) -> None:
        """Stop a job, bounded by the grace time, and forget its endpoints."""
        handle = self.job(job_id)
        handle.terminate(TERMINATE_GRACE)
        self._controller.forget_job(job_id)


class FlusterClient:
    """Submit and manage jobs of a cluster, on behalf of the current FlusterContext.

    Submitted jobs are children of the job current at ``submit()``: their ids
    sit under its namespace. Thread-safe.
    """

    def __init__(self, cluster: LocalCluster) -> None:
        self._cluster = cluster

    def __repr__(self) -> str:
        return f"FlusterClient({self._cluster.address!r})"

    def submit(
        self,
        entrypoint: Entrypoint | Callable[..., object],
        name: str,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> str:
        """Launch a job running ``entrypoint`` and return its id, ``<current job id>/<name>``.

        ``entrypoint`` is an ``Entrypoint`` or a callable called with ``args``
        and ``kwargs``. Raises ``RuntimeError`` without a current
        FlusterContext, and at once if the entrypoint cannot be serialized.
        """
        check_job_name(name)
        if not isinstance(entrypoint, Entrypoint):
            if not callable(entrypoint):
                raise TypeError(f"entrypoint must be callable, not {type(entrypoint).__name__}")
            entrypoint = Entrypoint(entrypoint, tuple(args), dict(kwargs or {}))
        parent = fluster_ctx()
        child = FlusterContext(
            job_id=parent.child_job_id(name),
            controller_address=self._cluster.address,
            secret=self._cluster.secret,
        )
        self._cluster.launch(child, _pickle.dumps(entrypoint))
        return child.job_id

    def terminate(self, job_id: str) -> None:
        """Stop a job (SIGTERM, then SIGKILL after a grace time) and forget its endpoints."""
        self._cluster.terminate(job_id)

    def poll(self, job_id: str) -> int | None:
        """Return the exit code of a job that ended, or None while it runs."""
        return self._cluster.job(job_id).poll()

    def wait(self, job_id: str, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for a job to end; return its exit code or None."""
        return self._cluster.job(job_id).wait(timeout)

    def pid(self, job_id: str) -> int | None:
        """Return the process id of a job, where the launcher knows it."""
        return self._cluster.job(job_id).pid

    def resolver(self) -> ClusterResolver:
        """Return a resolver for this cluster; it namespaces by the context current per call."""
        return ClusterResolver(self._cluster.address)
