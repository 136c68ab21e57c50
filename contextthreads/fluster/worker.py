"""Run one Fluster job: ``python -m contextthreads.fluster.worker``.

The worker reads its job from the environment, fetches the job's entrypoint
from the controller, and runs it with the job's FlusterContext current:

- ``FLUSTER_SECRET`` (required): the cluster secret. It is read from the
  environment only, never from the command line where other users could see
  it, and removed from ``os.environ`` once read.
- ``FLUSTER_CONTROLLER_ADDRESS`` or ``--controller``: ``http://host:port``.
- ``FLUSTER_JOB_ID`` or ``--job-id``: the id the job was submitted under.
- ``FLUSTER_ADVERTISE_HOST``: the address other hosts reach this one at
  (default 127.0.0.1); ``FLUSTER_BIND_HOST``: where actor servers listen
  (default: the advertised host).
- ``FLUSTER_LOG_LEVEL``: logging level (default WARNING).

Running a worker on another host: start the cluster with a controller that
host can reach (``LocalCluster(host="0.0.0.0", advertise_host=<controller host's
address>, python=<interpreter path there>, launcher=...)``, on a trusted
network or a tunnel: requests are signed, not encrypted), with a
``JobLauncher`` whose ``launch(job_id, command, env)`` runs the command there
with ``env`` delivered privately (for example on ssh's stdin), which amounts
to::

    FLUSTER_SECRET=<secret> FLUSTER_ADVERTISE_HOST=<worker host's address> \\
        python -m contextthreads.fluster.worker \\
        --controller http://<controller host>:<port> --job-id <job id>

The job must have been submitted (``FlusterClient.submit``), which stores its
entrypoint in the controller, and its code must be importable there (or
defined in ``__main__``, which travels by value). A worker whose controller
stops answering for ``FLUSTER_ORPHAN_TIMEOUT`` seconds (default 10) exits,
so workers never outlive their cluster.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Sequence

from . import _pickle
from ._cluster import Entrypoint
from ._context import (
    ENV_CONTROLLER,
    ENV_JOB_ID,
    ENV_LOG_LEVEL,
    ENV_ORPHAN_TIMEOUT,
    context_from_env,
    fluster_ctx_scope,
)
from ._controller import ControllerClient
from ._wire import RpcError

__all__ = ("main",)

logger = logging.getLogger("contextthreads.fluster.worker")

#: Exit codes.
EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE, EXIT_ORPHANED = 0, 1, 2, 3


def _watch_controller(client: ControllerClient, orphan_timeout: float) -> None:
    # Runs on a daemon thread for the worker's life: a worker whose cluster is
    # gone (its parent killed, say) must not linger.
    failing_since: float | None = None
    while not threading.Event().wait(1.0):
        try:
            client.ping()
            failing_since = None
        except RpcError as exc:
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
            if now - failing_since >= orphan_timeout:
                logger.error("controller %s unreachable (%s): exiting", client.address, exc)
                logging.shutdown()
                os._exit(EXIT_ORPHANED)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m contextthreads.fluster.worker",
        description="Run one Fluster job. The secret is read from $FLUSTER_SECRET only.",
    )
    parser.add_argument("--controller", help=f"default: ${ENV_CONTROLLER}")
    parser.add_argument("--job-id", help=f"default: ${ENV_JOB_ID}")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job described by the environment and arguments; return the exit code.

    The entrypoint runs in this (main) thread with the job's FlusterContext
    current; threads it starts see it if they are ``ContextThread``\\ s.
    """
    logging.basicConfig(
        level=os.environ.get(ENV_LOG_LEVEL, "WARNING").upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    options = _parse(argv)
    try:
        ctx = context_from_env(job_id=options.job_id, controller_address=options.controller)
    except RuntimeError as exc:
        logger.error("%s (--controller and --job-id may stand in for theirs)", exc)
        return EXIT_USAGE
    client = ControllerClient(ctx.controller_address, ctx.secret)
    orphan_timeout = float(os.environ.get(ENV_ORPHAN_TIMEOUT, "10"))
    threading.Thread(
        target=_watch_controller,
        args=(client, orphan_timeout),
        name="fluster-controller-watch",
        daemon=True,
    ).start()
    with fluster_ctx_scope(ctx):
        try:
            entrypoint = _pickle.loads(client.get_job(ctx.job_id))
            if not isinstance(entrypoint, Entrypoint):
                raise TypeError(f"job spec is a {type(entrypoint).__name__}, not an Entrypoint")
            logger.info("job %s starting", ctx.job_id)
            entrypoint.callable(*entrypoint.args, **entrypoint.kwargs)
        except Exception:
            logger.exception("job %s failed", ctx.job_id)
            return EXIT_JOB_FAILED
    logger.info("job %s done", ctx.job_id)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
