"""Fluster's WorkerPool on contextthreads, end to end: `python examples/fluster_worker_pool.py`.

A LocalCluster starts a controller in this process; a WorkerPool launches
three worker processes (``python -m contextthreads.fluster.worker``) as jobs
of "job-demo". Each pool dispatcher is a ContextThread started in this
job's FlusterContext, so it can resolve its worker in the job's namespace.
Tasks carry the submitter's request id (a ContextVar) to the workers. One
worker is then killed with SIGKILL in the middle of a task, and the task is
retried on another worker.

Needs cloudpickle: ``pip install 'contextthreads[fluster]'``.
"""

from __future__ import annotations

import contextvars
import logging
import os
import signal
import socket
import sys
from concurrent.futures import as_completed

from contextthreads.fluster import (
    LocalCluster,
    PoolStatus,
    WorkerPool,
    WorkerPoolConfig,
    fluster_ctx,
    fluster_ctx_scope,
)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def describe(n: int) -> str:
    """Run in a worker process: say who ran it, for which request."""
    ctx = fluster_ctx()
    return f"{n}^2={n * n:<3} on pid {os.getpid()} ({ctx.job_id}) for {request_id.get()}"


def slow_task(address: tuple[str, int]) -> int:
    """Tell the example our pid, then wait for its go-ahead; return the pid we ran in."""
    with socket.create_connection(address, timeout=60) as conn:
        conn.sendall(f"{os.getpid()}\n".encode())
        conn.recv(1)
    return os.getpid()


def show(status: PoolStatus) -> None:
    print(
        f"pool {status.pool_id}: {status.workers_idle} idle, {status.workers_busy} busy, "
        f"{status.workers_pending} pending, {status.workers_failed} failed; tasks: "
        f"{status.tasks_queued} queued, {status.tasks_completed} completed, "
        f"{status.tasks_failed} failed"
    )
    for worker in status.worker_details:
        print(
            f"  {worker['worker_id']}: {worker['status']:<6} pid={worker['pid']} "
            f"done={worker['tasks_completed']} failed={worker['tasks_failed']}"
        )


def read_pid(listener: socket.socket) -> tuple[socket.socket, int]:
    conn, _ = listener.accept()
    conn.settimeout(60)
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            raise RuntimeError("task hung up")
        data += chunk
    return conn, int(data)


def main() -> int:
    # The pool logs the killed worker as a warning; show it in the same style as the rest.
    logging.basicConfig(level=logging.WARNING, format="  [log] %(message)s")
    config = WorkerPoolConfig(num_workers=3, max_retries=1, context_vars=(request_id,))
    with LocalCluster() as cluster, fluster_ctx_scope(cluster.context("job-demo")):
        print(f"controller at {cluster.address}")
        with WorkerPool(cluster.client(), config, timeout=60) as pool:
            pool.wait_for_workers(timeout=60)
            request_id.set("req-42")
            futures = pool.map(describe, range(6))
            for future in as_completed(futures, timeout=60):
                print(" ", future.result())
            show(pool.status())

            print("killing a worker in the middle of a task...")
            with socket.create_server(("127.0.0.1", 0)) as listener:
                listener.settimeout(60)
                retried = pool.submit(slow_task, listener.getsockname()[:2])
                first, victim = read_pid(listener)
                os.kill(victim, signal.SIGKILL)
                first.close()
                second, survivor = read_pid(listener)
                second.sendall(b"g")
                second.close()
                ran_on = retried.result(timeout=60)
            print(f"  task started on pid {victim}, which was killed; retried on pid {ran_on}")
            show(pool.status())
            ok = ran_on == survivor != victim
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
