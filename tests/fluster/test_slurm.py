"""SlurmLauncher against a real Slurm: munged, slurmctld and two slurmd started for the session.

The cluster has two nodes (n1, n2) of one CPU each, so a two-worker pool
fills it and a third worker waits. Without Slurm's programs the tests skip,
except under CI (``CI`` set), where ``.ci/run`` installs them and their
absence is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from contextthreads.fluster import (
    Entrypoint,
    LocalCluster,
    SlurmError,
    SlurmJob,
    SlurmLauncher,
    WorkerPoolConfig,
    fluster_ctx_scope,
)

from . import slurm_daemons, tasks
from .engine_support import (
    check_killed_worker_is_retried,
    check_pending_worker_starts,
    check_round_trips,
    engine_pool,
    round_trip_config,
)
from .support import WAIT, Gate, LogWatcher

pytest.importorskip("cloudpickle")

pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Slurm runs on Linux"),
]


@pytest.fixture(scope="session")
def slurm() -> Iterator[slurm_daemons.SlurmCluster]:
    """A running two-node Slurm cluster on 127.0.0.1, stopped (by pid) after the session."""
    why = slurm_daemons.unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"under CI the Slurm tests must run: {why}")
        pytest.skip(why)
    with slurm_daemons.SlurmCluster() as cluster:
        yield cluster


@pytest.fixture
def launcher(slurm: slurm_daemons.SlurmCluster, tmp_path: Path) -> SlurmLauncher:
    """A SlurmLauncher for the session's cluster, job output in the test's tmp_path."""
    return SlurmLauncher(
        slurm_conf=str(slurm.conf), output=str(tmp_path / "slurm-%j.out"), poll_interval=1.0
    )


@pytest.fixture(autouse=True)
def _queue_left_empty(slurm: slurm_daemons.SlurmCluster) -> Iterator[None]:
    """Every test leaves no job of its own behind in Slurm's queue."""
    yield
    assert slurm.queue() == []


def environ_of(pid: int) -> dict[str, str]:
    """Return the environment a process on this machine was started with."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        pairs = [item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item]
    return {key.decode(): value.decode() for key, value in pairs}


def slurm_job(cluster: LocalCluster, job_id: str) -> SlurmJob:
    handle = cluster.job(job_id)
    assert isinstance(handle, SlurmJob)
    return handle


class Recorder:
    """What a wrapped Slurm command was run with: each call's argv, and what it noted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def calls(self) -> list[list[str]]:
        """Return the argv of every call so far, oldest first."""
        text = self.path.with_suffix(".argv").read_text()
        return [call.split("\n")[:-1] for call in text.split("\0\n")[:-1]]

    def noted(self) -> str:
        """Return what the wrapper's ``note`` shell command printed, over every call."""
        return self.path.with_suffix(".note").read_text()


def wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, note: str = ":") -> Recorder:
    """Put a wrapper for Slurm's ``name`` first on PATH: it records its argv and the output
    of the shell command ``note``, then execs the real command."""
    real = shutil.which(name)
    assert real is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / name
    wrapper = bin_dir / name
    wrapper.write_text(
        "#!/bin/sh\n"
        f"{{ printf '%s\\n' \"$@\"; printf '\\0\\n'; }} >> {record}.argv\n"
        f"{{ {note}; }} >> {record}.note\n"
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return Recorder(record)


def test_pool_workers_land_on_both_nodes(
    slurm: slurm_daemons.SlurmCluster, launcher: SlurmLauncher, gate: Gate
) -> None:
    """A two-worker pool placed by Slurm runs one worker on each node, each a batch job
    advertising the address Slurm has for its node; results and context_vars travel."""
    with engine_pool(launcher, "job-sl", round_trip_config()) as (cluster, pool):
        details = pool.status().worker_details
        environs = [environ_of(detail["pid"]) for detail in details]
        assert {env["SLURMD_NODENAME"] for env in environs} == set(slurm_daemons.NODES)
        assert {env["SLURM_JOB_ID"] for env in environs} == {
            slurm_job(cluster, detail["job_id"]).slurm_job_id for detail in details
        }
        assert all(d["endpoint_url"].startswith("http://127.0.0.1:") for d in details)
        check_round_trips(pool, gate)


def test_secret_travels_in_sbatch_environment_only(
    slurm: slurm_daemons.SlurmCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The secret reaches the job through sbatch's environment, named by --export: it is
    not in sbatch's argv, in the job script Slurm stores, in scontrol's view of the job, or
    in the worker's argv, and the worker removed it from os.environ once read."""
    record = wrap(tmp_path, monkeypatch, "sbatch", 'if [ -n "$FLUSTER_SECRET" ]; then echo yes; fi')
    launcher = SlurmLauncher(slurm_conf=str(slurm.conf), output=str(tmp_path / "out-%j"))
    info_path = tmp_path / "info.json"
    with LocalCluster(launcher=launcher) as cluster:
        with fluster_ctx_scope(cluster.context("job-secret")):
            job_id = cluster.client().submit(
                Entrypoint(tasks.write_job_info, (str(info_path),)), name="probe"
            )
        handle = slurm_job(cluster, job_id)
        assert cluster.client().wait(job_id, WAIT) == 0
        secret = cluster.secret
    [argv] = record.calls()
    assert record.noted() == "yes\n"  # the secret was in sbatch's environment
    assert not any(secret in arg for arg in argv)
    [export] = [arg for arg in argv if arg.startswith("--export=")]
    assert "FLUSTER_SECRET" in export.split("=", 1)[1].split(",")
    assert f"--job-name={job_id}" in argv
    stored = slurm.run("scontrol", "write", "batch_script", handle.slurm_job_id, "-").stdout
    assert "exec " in stored
    assert "contextthreads.fluster.worker" in stored
    assert secret not in stored
    assert secret not in slurm.run("scontrol", "show", "job", handle.slurm_job_id).stdout
    info = json.loads(info_path.read_text())
    assert info["job_id"] == job_id
    assert info["secret_in_argv"] is False
    assert info["secret_in_environ"] is False


def test_options_reach_slurm_and_one_squeue_asks_about_all_jobs(
    slurm: slurm_daemons.SlurmCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    gate: Gate,
) -> None:
    """The launcher's resource options and sbatch_args reach Slurm's job record, and its
    poller asks about all its live jobs in one squeue call."""
    squeue = wrap(tmp_path, monkeypatch, "squeue")
    launcher = SlurmLauncher(
        slurm_conf=str(slurm.conf),
        output=str(tmp_path / "%j.out"),
        time_limit="0:05:00",
        mem="1M",
        sbatch_args=["--comment=fluster-test"],
        poll_interval=0.5,
    )
    with LocalCluster(launcher=launcher) as cluster, fluster_ctx_scope(cluster.context("j-o")):
        client = cluster.client()
        job_ids = [
            client.submit(tasks.report_then_block, name=f"b{i}", args=(gate.address,))
            for i in range(2)
        ]
        gate.arrive()
        gate.arrive()
        slurm_ids = [slurm_job(cluster, job_id).slurm_job_id for job_id in job_ids]
        shown = slurm.run("scontrol", "--oneliner", "show", "job", slurm_ids[0]).stdout
        assert "TimeLimit=00:05:00" in shown
        assert "MinMemoryNode=1M" in shown
        assert "Comment=fluster-test" in shown
        for job_id in job_ids:  # each returns once the poller saw its job end
            client.terminate(job_id)
    asked = [arg for call in squeue.calls() for arg in call if arg.startswith("--jobs=")]
    assert f"--jobs={','.join(slurm_ids)}" in asked


def test_job_states_map_to_exit_codes(
    slurm: slurm_daemons.SlurmCluster, launcher: SlurmLauncher, gate: Gate
) -> None:
    """A job that succeeds reads 0, one whose entrypoint raises 1, and one terminated
    while running a negative (killed) code; terminate() returns once Slurm has ended it."""
    with LocalCluster(launcher=launcher) as cluster, fluster_ctx_scope(cluster.context("job-ex")):
        client = cluster.client()
        ok = client.submit(tasks.square, name="ok", args=(2,))
        fails = client.submit(tasks.raise_value_error, name="fails", args=(1,))
        assert client.wait(ok, WAIT) == 0
        assert client.wait(fails, WAIT) == 1
        assert slurm_job(cluster, ok).state == "COMPLETED"
        assert slurm_job(cluster, fails).state == "FAILED"
        assert client.pid(ok) is None
        forever = client.submit(tasks.report_then_block, "forever", args=(gate.address,))
        gate.arrive()  # running on a node now
        assert client.poll(forever) is None
        client.terminate(forever)
        code = client.poll(forever)
        assert code is not None
        assert code < 0


def test_killed_worker_is_retried_elsewhere(
    slurm: slurm_daemons.SlurmCluster, launcher: SlurmLauncher, gate: Gate
) -> None:
    """A worker killed through Slurm (scancel -s KILL) while running a task fails as a local
    worker would: its task runs again on the other worker, and the job reads as killed."""

    def kill(pid: int) -> str:
        slurm_job_id = environ_of(pid)["SLURM_JOB_ID"]
        slurm.run("scancel", "-s", "KILL", slurm_job_id)
        [job_id] = [j for j in pool.job_ids if slurm_job(cluster, j).slurm_job_id == slurm_job_id]
        return job_id

    config = WorkerPoolConfig(num_workers=2, max_retries=1)
    with engine_pool(launcher, "job-kl", config) as (cluster, pool):
        check_killed_worker_is_retried(cluster, pool, gate, kill)


def test_pool_larger_than_cluster_waits_then_starts(
    slurm: slurm_daemons.SlurmCluster,
    launcher: SlurmLauncher,
    watch_log: Callable[[str], LogWatcher],
) -> None:
    """Three workers on two one-CPU nodes: two start and take tasks, the third stays a
    pending worker, queued in Slurm, until one of the others ends; then it starts and
    serves. Leaving the pool and the cluster leaves nothing in Slurm's queue (checked by
    the autouse fixture)."""

    def is_queued(job_id: str) -> bool:
        queued = slurm_job(cluster, job_id).slurm_job_id
        state = slurm.run("squeue", "--noheader", f"--jobs={queued}", "--format=%T").stdout
        return state.strip() == "PENDING"

    config = WorkerPoolConfig(num_workers=3)
    with engine_pool(launcher, "job-big", config, min_workers=2) as (cluster, pool):
        check_pending_worker_starts(cluster, pool, watch_log, is_queued)


def test_refusals_are_clear_errors(
    slurm: slurm_daemons.SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown partition, a job Slurm refuses, a controller that does not answer and
    Slurm's commands missing from PATH each raise SlurmError saying so."""
    conf = str(slurm.conf)

    def submit(launcher: SlurmLauncher, name: str) -> None:
        with LocalCluster(launcher=launcher) as cluster, fluster_ctx_scope(cluster.context("r")):
            cluster.client().submit(tasks.square, name=name, args=(1,))

    with pytest.raises(SlurmError, match=r"(?i)invalid partition"):
        submit(SlurmLauncher(slurm_conf=conf, partition="nope"), "p")
    with pytest.raises(SlurmError, match=r"sbatch refused job 'r/c'.*feature"):
        submit(SlurmLauncher(slurm_conf=conf, constraint="gpu"), "c")
    [port] = slurm_daemons._free_ports(1)
    dead = tmp_path / "dead.conf"
    dead.write_text(
        "\n".join(
            f"SlurmctldPort={port}" if line.startswith("SlurmctldPort=") else line
            for line in slurm.conf.read_text().splitlines()
        )
    )
    with pytest.raises(SlurmError, match="Unable to contact slurm controller"):
        submit(SlurmLauncher(slurm_conf=str(dead)), "d")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmError, match="sbatch not found on PATH"):
        SlurmLauncher()


def test_pending_job_is_cancelled_at_cluster_close(
    slurm: slurm_daemons.SlurmCluster, tmp_path: Path
) -> None:
    """Closing the cluster cancels a job Slurm has not started (it asks for more CPUs than
    any node has), which then reads as killed."""
    big = SlurmLauncher(
        slurm_conf=str(slurm.conf), cpus_per_task=4, output=str(tmp_path / "%j.out")
    )
    with LocalCluster(launcher=big) as cluster:
        with fluster_ctx_scope(cluster.context("job-pend")):
            job_id = cluster.client().submit(tasks.square, name="big", args=(1,))
        handle = slurm_job(cluster, job_id)
        assert handle.poll() is None
    assert handle.poll() == -signal.SIGKILL
    assert handle.state == "CANCELLED"
