"""The current Fluster job: who we are, which namespace we live in, how to reach the controller."""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field
from typing import Iterator, MutableMapping

__all__ = (
    "ENV_ADVERTISE_HOST",
    "ENV_BIND_HOST",
    "ENV_CONTROLLER",
    "ENV_JOB_ID",
    "ENV_LOG_LEVEL",
    "ENV_ORPHAN_TIMEOUT",
    "ENV_SECRET",
    "ENV_TLS_CA",
    "ENV_TLS_CERT",
    "ENV_TLS_KEY",
    "FlusterContext",
    "check_job_name",
    "context_from_env",
    "fluster_ctx",
    "fluster_ctx_scope",
    "get_fluster_ctx",
)

#: Environment variables a worker process reads its context from. The secret
#: travels only here, never on a command line, where ``ps`` would show it.
ENV_JOB_ID = "FLUSTER_JOB_ID"
ENV_CONTROLLER = "FLUSTER_CONTROLLER_ADDRESS"
ENV_SECRET = "FLUSTER_SECRET"
#: How a worker process is set up on its host (see ``contextthreads.fluster.worker``).
ENV_ADVERTISE_HOST = "FLUSTER_ADVERTISE_HOST"
ENV_BIND_HOST = "FLUSTER_BIND_HOST"
ENV_LOG_LEVEL = "FLUSTER_LOG_LEVEL"
ENV_ORPHAN_TIMEOUT = "FLUSTER_ORPHAN_TIMEOUT"
#: TLS files (``TLSConfig``): what a worker's servers present, and what its clients trust.
ENV_TLS_CERT = "FLUSTER_TLS_CERT"
ENV_TLS_KEY = "FLUSTER_TLS_KEY"
ENV_TLS_CA = "FLUSTER_TLS_CA"


def check_job_name(name: str, what: str = "job name") -> str:
    """Return ``name`` if it is a usable job id segment, else raise ``ValueError``."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name or "/" in name or name.strip() != name or not name.isprintable():
        raise ValueError(
            f"{what} must be a non-empty printable string without '/' or surrounding "
            f"whitespace, got {name!r}"
        )
    return name


@dataclass(frozen=True)
class FlusterContext:
    """Identify the current Fluster job: its id, the controller's address and the cluster secret.

    The job id is hierarchical (``"job-a/worker-0"``); its first segment is the
    namespace, which scopes every endpoint the job registers or resolves. The
    secret signs every request; it is left out of ``repr()`` and comparisons.
    Instances are immutable and safe to share between threads.

    Args:
        job_id: The job's id: one or more ``/``-separated segments, each
            non-empty, printable and without surrounding whitespace.
        controller_address: The controller's ``http://`` or ``https://``
            address, as the job reaches it.
        secret: The cluster secret, a non-empty string.

    Raises:
        ValueError: If any of the three is empty, or a segment of ``job_id``
            is not a usable name.
    """

    job_id: str
    controller_address: str
    secret: str = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.job_id, str) or not self.job_id:
            raise ValueError(f"job_id must be a non-empty str, got {self.job_id!r}")
        for segment in self.job_id.split("/"):
            check_job_name(segment, f"segment {segment!r} of job_id {self.job_id!r}")
        if not isinstance(self.secret, str) or not self.secret:
            raise ValueError("secret must be a non-empty str")
        if not isinstance(self.controller_address, str) or not self.controller_address:
            raise ValueError("controller_address must be a non-empty str")

    @property
    def namespace(self) -> str:
        """Return the root segment of the job id, whose jobs all share their endpoints."""
        return self.job_id.split("/", 1)[0]

    @property
    def parent_job_id(self) -> str | None:
        """Return the id of the job that submitted this one, or None for a root job."""
        parent, sep, _ = self.job_id.rpartition("/")
        return parent if sep else None

    def child_job_id(self, name: str) -> str:
        """Return the id of a job called ``name`` submitted by this job.

        Args:
            name: One segment: non-empty, printable, without ``/`` or
                surrounding whitespace.

        Raises:
            ValueError: If ``name`` is not a usable segment (``TypeError`` if
                not a str).
        """
        return f"{self.job_id}/{check_job_name(name)}"

    def to_env(self) -> dict[str, str]:
        """Return the environment variables a worker process rebuilds this context from.

        The secret is among them: hand them to a process privately (its
        environment), never on a command line.
        """
        return {
            ENV_JOB_ID: self.job_id,
            ENV_CONTROLLER: self.controller_address,
            ENV_SECRET: self.secret,
        }


_current: contextvars.ContextVar[FlusterContext | None] = contextvars.ContextVar(
    "fluster_context", default=None
)


def get_fluster_ctx() -> FlusterContext | None:
    """Return the FlusterContext of the current ``contextvars`` context, or None.

    Like any ``ContextVar``, it is per thread: a thread sees it only if it was
    started in a context that holds it (``contextthreads.ContextThread``).
    """
    return _current.get()


def fluster_ctx() -> FlusterContext:
    """Return the current FlusterContext, or raise ``RuntimeError`` if there is none.

    Raises:
        RuntimeError: Outside any ``fluster_ctx_scope()`` or Fluster job, or in
            a thread that was not started carrying the context.
    """
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError(
            "no FlusterContext in the current context: run inside fluster_ctx_scope(ctx) "
            "or a Fluster job, and start threads with contextthreads.ContextThread so "
            "they carry it"
        )
    return ctx


@contextlib.contextmanager
def fluster_ctx_scope(ctx: FlusterContext) -> Iterator[FlusterContext]:
    """Make ``ctx`` the current FlusterContext for the block, then restore the previous one.

    The change is seen by this thread and by ``ContextThread``\\ s started
    inside the block, never by other threads already running.

    Args:
        ctx: The context to make current.

    Yields:
        ``ctx``.

    Raises:
        TypeError: If ``ctx`` is not a ``FlusterContext``.
    """
    if not isinstance(ctx, FlusterContext):
        raise TypeError(f"fluster_ctx_scope() needs a FlusterContext, not {type(ctx).__name__}")
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def context_from_env(
    environ: MutableMapping[str, str] | None = None,
    *,
    job_id: str | None = None,
    controller_address: str | None = None,
) -> FlusterContext:
    """Build the FlusterContext a worker process was launched with from its environment.

    ``job_id`` and ``controller_address``, if given, stand in for their
    variables; the secret comes from the environment only, and is removed
    from ``environ`` (default ``os.environ``) as it is read, so that neither
    the job nor the processes it starts see it there. Raises ``RuntimeError``
    naming the missing variables.
    """
    env = os.environ if environ is None else environ
    secret = env.pop(ENV_SECRET, "")
    job_id = job_id or env.get(ENV_JOB_ID, "")
    controller_address = controller_address or env.get(ENV_CONTROLLER, "")
    found = {ENV_JOB_ID: job_id, ENV_CONTROLLER: controller_address, ENV_SECRET: secret}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise RuntimeError(f"missing environment variables: {', '.join(missing)}")
    return FlusterContext(job_id=job_id, controller_address=controller_address, secret=secret)
