"""Job launchers: what a cluster asks one to run, and pools on workers launched elsewhere."""

from __future__ import annotations

import os
import subprocess
from typing import Mapping, Sequence

import pytest

from contextthreads.fluster import (
    JobHandle,
    LocalCluster,
    LocalProcessLauncher,
    WorkerPool,
    WorkerPoolConfig,
    fluster_ctx_scope,
    worker_command,
)
from contextthreads.fluster._launcher import _LocalProcess

from . import tasks
from .support import WAIT

pytest.importorskip("cloudpickle")


class RecordingLauncher:
    """A JobLauncher that records what it is asked to run, then runs it locally."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []
        self._local = LocalProcessLauncher()

    def launch(self, job_id: str, command: Sequence[str], env: Mapping[str, str]) -> JobHandle:
        self.calls.append((job_id, list(command), dict(env)))
        return self._local.launch(job_id, command, env)


def test_custom_launcher_gets_command_and_env() -> None:
    """A launcher receives the worker command and an env holding the job's context; the
    secret is in env, never in the command.
    """
    launcher = RecordingLauncher()
    with LocalCluster(launcher=launcher) as own:
        with fluster_ctx_scope(own.context("job-l")):
            job_id = own.client().submit(tasks.square, name="sq", args=(2,))
        assert own.client().wait(job_id, WAIT) == 0
        [(launched, command, env)] = launcher.calls
    assert launched == "job-l/sq"
    assert command == worker_command()
    assert env["FLUSTER_JOB_ID"] == "job-l/sq"
    assert env["FLUSTER_CONTROLLER_ADDRESS"] == own.address
    assert env["FLUSTER_SECRET"] == own.secret
    assert all(own.secret not in part for part in command)
    assert own.secret not in repr(own)


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

    with LocalCluster(host="0.0.0.0", advertise_host="127.0.0.1", launcher=CleanEnvLauncher()) as c:
        assert c.address.startswith("http://127.0.0.1:")
        config = WorkerPoolConfig(num_workers=1)
        with fluster_ctx_scope(c.context("job-remote")), WorkerPool(c.client(), config) as pool:
            base = 40
            assert pool.submit(lambda x: x + base, 2).result(WAIT) == 42
            [detail] = pool.status().worker_details
            assert detail["endpoint_url"].startswith("http://127.0.0.1:")
