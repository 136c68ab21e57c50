"""``python -m contextthreads.fluster.worker``: how a job's process starts, fails and ends."""

from __future__ import annotations

import os
import subprocess

import pytest

from contextthreads.fluster import LocalCluster, fluster_ctx_scope, worker_command

from . import tasks
from .support import WAIT, Gate

pytest.importorskip("cloudpickle")


def test_failing_job_exits_non_zero(cluster: LocalCluster) -> None:
    """A job whose entrypoint raises exits with code 1."""
    with fluster_ctx_scope(cluster.context("job-f")):
        job_id = cluster.client().submit(tasks.raise_value_error, name="fails", args=(1,))
    assert cluster.client().wait(job_id, WAIT) == 1


def test_worker_without_environment_exits_with_usage_error() -> None:
    """The worker module refuses to start without its secret, naming what is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUSTER_")}
    proc = subprocess.run(
        worker_command(), env=env, capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert proc.returncode == 2
    assert "FLUSTER_SECRET" in proc.stderr


def test_orphaned_worker_exits_when_controller_goes(
    gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running worker whose controller stops answering exits by itself (code 3)."""
    monkeypatch.setenv("FLUSTER_ORPHAN_TIMEOUT", "1")
    with LocalCluster() as own:
        with fluster_ctx_scope(own.context("job-o")):
            job_id = own.client().submit(
                tasks.report_then_block, name="orphan", args=(gate.address,)
            )
        handle = own.job(job_id)
        assert gate.arrive() == handle.pid
        own.controller.close()
        assert handle.wait(WAIT) == 3
