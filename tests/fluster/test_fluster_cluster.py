"""LocalCluster: jobs are real worker processes with their own FlusterContext."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

import fluster_tasks
import pytest
from fluster_support import WAIT, Gate, pid_alive

from contextthreads.fluster import (
    Entrypoint,
    JobHandle,
    LocalCluster,
    LocalProcessLauncher,
    fluster_ctx_scope,
    worker_command,
)
from contextthreads.fluster._launcher import _LocalProcess

pytest_plugins = ("fluster_fixtures",)

pytest.importorskip("cloudpickle")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_job_runs_in_a_process_with_its_own_context(cluster: LocalCluster, tmp_path: Path) -> None:
    """A submitted job runs in another process, under the submitter's namespace, with the
    secret reaching it through the environment only (not argv, and gone from os.environ).
    """
    out = tmp_path / "info.json"
    with fluster_ctx_scope(cluster.context("job-a")):
        job_id = cluster.client().submit(
            Entrypoint(fluster_tasks.write_job_info, (str(out),)), name="probe"
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
    from contextthreads.fluster import FlusterContext

    child = FlusterContext("job-n/parent", cluster.address, cluster.secret)
    with fluster_ctx_scope(child):
        job_id = cluster.client().submit(fluster_tasks.square, name="leaf", args=(3,))
    assert job_id == "job-n/parent/leaf"
    assert cluster.client().wait(job_id, WAIT) == 0


def test_submit_needs_a_context_and_serializable_entrypoint(cluster: LocalCluster) -> None:
    """Submitting outside any FlusterContext raises RuntimeError; an unpicklable entrypoint
    raises at submit(); a name with '/' is refused.
    """
    import contextvars
    import threading

    client = cluster.client()
    with pytest.raises(RuntimeError, match="FlusterContext"):
        contextvars.Context().run(client.submit, fluster_tasks.square, "x")
    with fluster_ctx_scope(cluster.context("job-s")):
        with pytest.raises(TypeError):
            client.submit(fluster_tasks.square, name="bad", args=(threading.Lock(),))
        with pytest.raises(ValueError, match="/"):
            client.submit(fluster_tasks.square, name="a/b", args=(1,))


def test_terminate_stops_a_running_job(cluster: LocalCluster) -> None:
    """terminate() ends a job that would run forever, and the process is gone."""
    client = cluster.client()
    with fluster_ctx_scope(cluster.context("job-t")):
        job_id = client.submit(fluster_tasks.block_forever, name="forever")
    pid = client.pid(job_id)
    assert pid is not None
    assert client.poll(job_id) is None
    client.terminate(job_id)
    assert client.poll(job_id) is not None
    assert not pid_alive(pid)


def test_failing_job_exits_non_zero(cluster: LocalCluster) -> None:
    """A job whose entrypoint raises exits with code 1."""
    with fluster_ctx_scope(cluster.context("job-f")):
        job_id = cluster.client().submit(fluster_tasks.raise_value_error, name="fails", args=(1,))
    assert cluster.client().wait(job_id, WAIT) == 1


def test_worker_without_environment_exits_with_usage_error() -> None:
    """The worker module refuses to start without its secret, naming what is missing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUSTER_")}
    proc = subprocess.run(
        worker_command(), env=env, capture_output=True, text=True, timeout=WAIT, check=False
    )
    assert proc.returncode == 2
    assert "FLUSTER_SECRET" in proc.stderr


class RecordingLauncher:
    """A JobLauncher that records what it is asked to run, then runs it locally."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []
        self._local = LocalProcessLauncher()

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        self.calls.append((job_id, list(command), dict(env)))
        return self._local.launch(job_id, command, env)


def test_custom_launcher_gets_command_and_env(tmp_path: Path) -> None:
    """A launcher receives the worker command and an env holding the job's context; the
    secret is in env, never in the command.
    """
    launcher = RecordingLauncher()
    with LocalCluster(launcher=launcher) as own:
        with fluster_ctx_scope(own.context("job-l")):
            job_id = own.client().submit(fluster_tasks.square, name="sq", args=(2,))
        assert own.client().wait(job_id, WAIT) == 0
        [(launched, command, env)] = launcher.calls
    assert launched == "job-l/sq"
    assert command == worker_command()
    assert env["FLUSTER_JOB_ID"] == "job-l/sq"
    assert env["FLUSTER_CONTROLLER_ADDRESS"] == own.address
    assert env["FLUSTER_SECRET"] == own.secret
    assert all(own.secret not in part for part in command)
    assert own.secret not in repr(own)


def test_orphaned_worker_exits_when_controller_goes(
    gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A running worker whose controller stops answering exits by itself (code 3)."""
    monkeypatch.setenv("FLUSTER_ORPHAN_TIMEOUT", "1")
    with LocalCluster() as own:
        with fluster_ctx_scope(own.context("job-o")):
            job_id = own.client().submit(
                fluster_tasks.report_then_block, name="orphan", args=(gate.address,)
            )
        handle = own.job(job_id)
        assert gate.arrive() == handle.pid
        own.controller.close()
        assert handle.wait(WAIT) == 3


class CleanEnvLauncher:
    """Stand in for a launcher to another host: only the job's env and a PATH, no sys.path
    handed down, the worker told to listen on every interface and advertise 127.0.0.1."""

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        clean = {"PATH": os.environ.get("PATH", ""), **env}
        clean.update(FLUSTER_BIND_HOST="0.0.0.0", FLUSTER_ADVERTISE_HOST="127.0.0.1")
        process = subprocess.Popen(list(command), env=clean, stdin=subprocess.DEVNULL)
        return _LocalProcess(process)


def test_pool_through_a_remote_style_launcher() -> None:
    """With the controller on 0.0.0.0 advertised as 127.0.0.1 and workers started from a
    bare environment by a custom launcher, a pool still finds and uses its workers;
    callables travel by value."""
    from contextthreads.fluster import WorkerPool, WorkerPoolConfig

    with LocalCluster(host="0.0.0.0", advertise_host="127.0.0.1", launcher=CleanEnvLauncher()) as c:
        assert c.address.startswith("http://127.0.0.1:")
        config = WorkerPoolConfig(num_workers=1)
        with fluster_ctx_scope(c.context("job-remote")), WorkerPool(c.client(), config) as pool:
            base = 40
            assert pool.submit(lambda x: x + base, 2).result(WAIT) == 42
            [detail] = pool.status().worker_details
            assert detail["endpoint_url"].startswith("http://127.0.0.1:")
