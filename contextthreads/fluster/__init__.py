"""Fluster on contextthreads: jobs, namespaced actor discovery and a WorkerPool of real processes.

A ``FlusterContext`` (job id, namespace, controller address, secret) lives
in a ``ContextVar``. The ``ClusterResolver`` namespaces every name with the
context current when it is called, so the ``WorkerPool``'s dispatcher threads
are ``contextthreads.ContextThread``\\ s: on a plain ``threading.Thread`` they
would have no context. Workers are separate processes
(``python -m contextthreads.fluster.worker``) reached over HTTP on real
sockets, each fed its tasks over one persistent stream; every request, reply
and stream frame is signed with HMAC-SHA256 using the cluster secret, and
carries cloudpickle (the ``fluster`` extra:
``pip install 'contextthreads[fluster]'``), which is imported only when
something is serialized.
"""

from __future__ import annotations

from ._actor import ActorClient, ActorServer
from ._cluster import Entrypoint, FlusterClient, LocalCluster
from ._codec import RemoteError, RemoteTraceback
from ._context import FlusterContext, fluster_ctx, fluster_ctx_scope, get_fluster_ctx
from ._controller import Controller, ControllerClient, Endpoint
from ._dispatch import WorkerDispatcher
from ._launcher import JobHandle, JobLauncher, LocalProcessLauncher, worker_command
from ._pool import WorkerPool, WorkerPoolConfig
from ._pool_types import (
    PoolBrokenError,
    PoolShutdownError,
    PoolStatus,
    WorkerFailedError,
    WorkerStatus,
)
from ._ray import RayJob, RayLauncher
from ._resolver import ClusterResolver, FixedResolver, ResolvedEndpoint, Resolver, ResolveResult
from ._slurm import SlurmError, SlurmJob, SlurmLauncher
from ._stream import FrameChannel
from ._wire import RpcAuthError, RpcConnectionError, RpcError, RpcProtocolError, RpcTimeoutError

__all__ = (
    "ActorClient",
    "ActorServer",
    "ClusterResolver",
    "Controller",
    "ControllerClient",
    "Endpoint",
    "Entrypoint",
    "FixedResolver",
    "FlusterClient",
    "FlusterContext",
    "FrameChannel",
    "JobHandle",
    "JobLauncher",
    "LocalCluster",
    "LocalProcessLauncher",
    "PoolBrokenError",
    "PoolShutdownError",
    "PoolStatus",
    "RayJob",
    "RayLauncher",
    "RemoteError",
    "RemoteTraceback",
    "ResolveResult",
    "ResolvedEndpoint",
    "Resolver",
    "RpcAuthError",
    "RpcConnectionError",
    "RpcError",
    "RpcProtocolError",
    "RpcTimeoutError",
    "SlurmError",
    "SlurmJob",
    "SlurmLauncher",
    "WorkerDispatcher",
    "WorkerFailedError",
    "WorkerPool",
    "WorkerPoolConfig",
    "WorkerStatus",
    "fluster_ctx",
    "fluster_ctx_scope",
    "get_fluster_ctx",
    "worker_command",
)
