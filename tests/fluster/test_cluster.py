"""LocalCluster: jobs are real worker processes with their own FlusterContext."""

from __future__ import annotations

import contextvars
import json
import os
import sys
import threading
from pathlib import Path

import pytest

from contextthreads.fluster import Entrypoint, FlusterContext, LocalCluster, fluster_ctx_scope

from . import tasks
from .support import WAIT, pid_alive

pytest.importorskip("cloudpickle")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_job_runs_in_a_process_with_its_own_context(cluster: LocalCluster, tmp_path: Path) -> None:
    """A submitted job runs in another process, under the submitter's namespace, with the
    secret reaching it through the environment only (not argv, and gone from os.environ).
    """
    out = tmp_path / "info.json"
    with fluster_ctx_scope(cluster.context("job-a")):
        job_id = cluster.client().submit(
            Entrypoint(tasks.write_job_info, (str(out),)), name="probe"
        )
    assert job_id == "job-a/probe"
    assert cluster.client().wait(job_id, WAIT) == 0
    info = json.loads(out.read_text())
    assert info["job_id"] == "job-a/probe"
    assert info["namespace"] == "job-a"
    assert info["parent_job_id"] == "job-a"
    assert info["pid"] != os.getpid()
    assert info["secret_in_argv"] is False
    assert info["secret_in_environ"] is False
    assert info["argv"][1:] == ["-m", "contextthreads.fluster.worker"]


def test_nested_job_ids_stay_under_the_root_namespace(cluster: LocalCluster) -> None:
    """A job submitted from a child job is its child; the namespace is still the root's."""

    child = FlusterContext("job-n/parent", cluster.address, cluster.secret)
    with fluster_ctx_scope(child):
        job_id = cluster.client().submit(tasks.square, name="leaf", args=(3,))
    assert job_id == "job-n/parent/leaf"
    assert cluster.client().wait(job_id, WAIT) == 0


def test_submit_needs_a_context_and_serializable_entrypoint(cluster: LocalCluster) -> None:
    """Submitting outside any FlusterContext raises RuntimeError; an unpicklable entrypoint
    raises at submit(); a name with '/' is refused.
    """

    client = cluster.client()
    with pytest.raises(RuntimeError, match="FlusterContext"):
        contextvars.Context().run(client.submit, tasks.square, "x")
    with fluster_ctx_scope(cluster.context("job-s")):
        with pytest.raises(TypeError):
            client.submit(tasks.square, name="bad", args=(threading.Lock(),))
        with pytest.raises(ValueError, match="/"):
            client.submit(tasks.square, name="a/b", args=(1,))


def test_terminate_stops_a_running_job(cluster: LocalCluster) -> None:
    """terminate() ends a job that would run forever, and the process is gone."""
    client = cluster.client()
    with fluster_ctx_scope(cluster.context("job-t")):
        job_id = client.submit(tasks.block_forever, name="forever")
    pid = client.pid(job_id)
    assert pid is not None
    assert client.poll(job_id) is None
    client.terminate(job_id)
    assert client.poll(job_id) is not None
    assert not pid_alive(pid)
