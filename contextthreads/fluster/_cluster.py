"""LocalCluster: an in-process controller plus jobs launched as real worker processes.

Every job runs ``python -m contextthreads.fluster.worker``, which reads its
FlusterContext from the environment (the secret never goes on a command line),
fetches its entrypoint from the controller and runs it. Launching sits behind
``JobLauncher``, so something other than local subprocesses (ssh, a batch
system) can run the same command on other hosts.
"""

from __future__ import annotations

import secrets
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from . import _pickle
from ._context import FlusterContext, check_job_name, fluster_ctx
from ._controller import Controller
from ._launcher import TERMINATE_GRACE, JobHandle, JobLauncher, LocalProcessLauncher, worker_command
from ._resolver import ClusterResolver
from ._tls import TLSConfig

__all__ = ("Entrypoint", "FlusterClient", "LocalCluster")


@dataclass(frozen=True)
class Entrypoint:
    """What a job runs: ``callable(*args, **kwargs)``, shipped to the worker with cloudpickle.

    Attributes:
        callable: What the worker process calls; it must pickle with
            cloudpickle (a function of ``__main__`` or a lambda travels by
            value, one of an importable module by reference).
        args: Its positional arguments.
        kwargs: Its keyword arguments.
    """

    callable: Callable[..., object]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class LocalCluster:
    """Run a controller in this process and jobs as worker processes on this host.

    Use it as a context manager: entering starts the controller, leaving
    terminates every job still running and stops the controller. The
    controller's socket is bound in the constructor. Thread-safe.

    To reach workers on other hosts, bind ``host="0.0.0.0"``, give the
    ``advertise_host`` they reach this one by, a ``launcher`` that runs the
    worker command there, and ``python``, the interpreter path on those hosts
    (see ``contextthreads.fluster.worker``).

    Args:
        secret: The cluster secret that signs every request; by default a
            fresh random one. It is never shown in ``repr()``.
        host: The address the controller binds: 127.0.0.1 by default,
            ``0.0.0.0`` for every interface.
        port: The controller's port; 0 picks a free one (see ``address``).
        advertise_host: The name or address workers reach the controller by,
            when ``host`` is a wildcard.
        launcher: Starts each worker process; by default a
            ``LocalProcessLauncher`` (subprocesses of this one). Use a
            ``SlurmLauncher``, a ``RayLauncher`` or your own ``JobLauncher``
            to run them elsewhere.
        python: The interpreter path the worker command uses; by default this
            process's ``sys.executable``.
        tls: With a ``TLSConfig``, the controller and every worker's actor
            server serve TLS with its certificate, and clients verify them
            against its CA file.
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
        tls: TLSConfig | None = None,
    ) -> None:
        self.secret = secret or secrets.token_hex(32)
        self._tls = tls
        self.ssl_context = None if tls is None else tls.client_context()
        self._controller = Controller(
            self.secret,
            host,
            port,
            advertise_host=advertise_host,
            ssl_context=None if tls is None else tls.server_context(),
        )
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
        """Return the controller's address, ``http://host:port`` (``https://`` with TLS)."""
        return self._controller.address

    @property
    def controller(self) -> Controller:
        """Return the in-process controller."""
        return self._controller

    def start(self) -> LocalCluster:
        """Start serving the controller; return self. A second call does nothing.

        Raises:
            RuntimeError: If the cluster was closed.
        """
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
        """Return the FlusterContext of a job called ``job_id`` in this cluster (a root job).

        Args:
            job_id: The job's id, whose first segment is its namespace.
        """
        return FlusterContext(job_id=job_id, controller_address=self.address, secret=self.secret)

    def client(self) -> FlusterClient:
        """Return a client that submits jobs to this cluster."""
        return FlusterClient(self)

    def launch(self, ctx: FlusterContext, spec: bytes) -> None:
        """Store ``spec`` for ``ctx.job_id`` and start its worker. Use ``FlusterClient.submit``.

        Args:
            ctx: The new job's context (its id, this cluster's address and secret).
            spec: The job's pickled ``Entrypoint``.

        Raises:
            RuntimeError: If the cluster was closed.
            ValueError: If a job of that id is still running.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("this LocalCluster is closed")
            old = self._jobs.get(ctx.job_id)
            if old is not None and old.poll() is None:
                raise ValueError(f"job {ctx.job_id!r} is already running")
            self._controller.put_job(ctx.job_id, spec)
            env = ctx.to_env()
            if self._tls is not None:
                env.update(self._tls.to_env())
            self._jobs[ctx.job_id] = self._launcher.launch(ctx.job_id, self._command, env)

    def job(self, job_id: str) -> JobHandle:
        """Return the handle of a job, from its launcher.

        Args:
            job_id: The job's id.

        Raises:
            KeyError: If no job of that id was ever submitted.
        """
        with self._lock:
            return self._jobs[job_id]

    def terminate(self, job_id: str) -> None:
        """Stop a job, bounded by the grace time, and forget its endpoints.

        Args:
            job_id: The job's id.

        Raises:
            KeyError: If no job of that id was ever submitted.
        """
        handle = self.job(job_id)
        handle.terminate(TERMINATE_GRACE)
        self._controller.forget_job(job_id)


class FlusterClient:
    """Submit and manage jobs of a cluster, on behalf of the current FlusterContext.

    Submitted jobs are children of the job current at ``submit()``: their ids
    sit under its namespace. Thread-safe. Get one from ``LocalCluster.client()``.

    Args:
        cluster: The cluster whose jobs it submits.
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

        Args:
            entrypoint: An ``Entrypoint``, or a callable to call with ``args``
                and ``kwargs``.
            name: The job's name: one job-id segment, without ``/``.
            args: Positional arguments, for a callable ``entrypoint``.
            kwargs: Keyword arguments, for a callable ``entrypoint``.

        Raises:
            RuntimeError: Without a current FlusterContext.
            TypeError: If ``entrypoint`` is not callable, or cannot be
                serialized (raised at once, before anything is launched).
            ValueError: If ``name`` is not a usable job name, or the job is
                already running.
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
        """Stop a job (SIGTERM, then SIGKILL after a grace time) and forget its endpoints.

        Args:
            job_id: The id ``submit()`` returned.

        Raises:
            KeyError: If no job of that id was ever submitted.
        """
        self._cluster.terminate(job_id)

    def poll(self, job_id: str) -> int | None:
        """Return the exit code of a job that ended, or None while it runs.

        Args:
            job_id: The id ``submit()`` returned.

        Raises:
            KeyError: If no job of that id was ever submitted.
        """
        return self._cluster.job(job_id).poll()

    def wait(self, job_id: str, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for a job to end; return its exit code or None.

        An exit code is negative for a job ended by a signal (``-9``: killed).

        Args:
            job_id: The id ``submit()`` returned.
            timeout: The most seconds to wait.

        Raises:
            KeyError: If no job of that id was ever submitted.
        """
        return self._cluster.job(job_id).wait(timeout)

    def pid(self, job_id: str) -> int | None:
        """Return the process id of a job, where the launcher knows it (None elsewhere).

        Args:
            job_id: The id ``submit()`` returned.

        Raises:
            KeyError: If no job of that id was ever submitted.
        """
        return self._cluster.job(job_id).pid

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """Return the context clients verify this cluster's servers with (None without TLS)."""
        return self._cluster.ssl_context

    def resolver(self) -> ClusterResolver:
        """Return a resolver for this cluster; it namespaces by the context current per call."""
        return ClusterResolver(self._cluster.address, ssl_context=self.ssl_context)
