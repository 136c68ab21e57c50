"""Launching jobs: what a launched job looks like, and the launcher for this host.

A cluster runs every job as the worker command (``worker_command()``) with the
job's FlusterContext in its environment. A ``JobLauncher`` decides where that
command runs: ``LocalProcessLauncher`` makes it a subprocess here; one for ssh
or a batch system runs it elsewhere and hands back a ``JobHandle``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import Mapping, Protocol, Sequence

__all__ = (
    "TERMINATE_GRACE",
    "WORKER_MODULE",
    "JobHandle",
    "JobLauncher",
    "LocalProcessLauncher",
    "worker_command",
    "worker_pythonpath",
)

logger = logging.getLogger("contextthreads.fluster")

WORKER_MODULE = "contextthreads.fluster.worker"
#: How long a job gets to exit after SIGTERM before it is killed.
TERMINATE_GRACE = 5.0


def worker_command(python: str | None = None) -> list[str]:
    """Return the command that runs a worker: ``python -m contextthreads.fluster.worker``."""
    return [python or sys.executable, "-m", WORKER_MODULE]


def worker_pythonpath() -> str:
    """Return a ``PYTHONPATH`` of this process's ``sys.path``, then its own ``PYTHONPATH``.

    Workers started with it import what this process imports, so functions
    pickled by reference resolve to the same modules (on a shared filesystem,
    for workers on other hosts).
    """
    paths = [p or os.getcwd() for p in sys.path]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


class JobHandle(Protocol):
    """A launched job, as its launcher sees it. Methods must be thread-safe."""

    @property
    def pid(self) -> int | None:
        """Return the process id, if the job is a process this host can see."""
        ...

    def poll(self) -> int | None:
        """Return the exit code if the job has ended, else None."""
        ...

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for the job to end; return its exit code or None."""
        ...

    def terminate(self, grace: float) -> None:
        """Stop the job: ask it, then force it after ``grace`` seconds. Return once it is gone."""
        ...


class JobLauncher(Protocol):
    """Start a worker command somewhere. Replace it to run workers off this host."""

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        """Run ``command`` with ``env`` added to the environment; return its handle.

        ``env`` holds the cluster secret: deliver it privately, never in argv.
        """
        ...


class _LocalProcess:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def poll(self) -> int | None:
        with self._lock:
            return self._process.poll()

    def wait(self, timeout: float) -> int | None:
        # Not under the lock: poll() and terminate() must stay responsive meanwhile.
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self, grace: float) -> None:
        with self._lock:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(grace)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(grace)


class LocalProcessLauncher:
    """Launch each job as a subprocess of this one, on this host.

    The child gets this process's ``sys.path`` on ``PYTHONPATH`` so that
    functions pickled by reference resolve to the same modules there.
    """

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        """Start ``command`` with ``env`` over this process's environment."""
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = worker_pythonpath()
        full_env.update(env)
        process = subprocess.Popen(list(command), env=full_env, stdin=subprocess.DEVNULL)
        logger.debug("launched job %s as pid %d", job_id, process.pid)
        return _LocalProcess(process)
