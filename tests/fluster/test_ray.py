"""RayLauncher against a real Ray: a two-node ``ray.cluster_utils.Cluster`` started for the session.

Both nodes have one CPU and listen on 127.0.0.1, so a two-worker pool fills
the cluster and a third worker waits. Ray is an optional extra, installed by
the ``tests_ray`` nox session only: elsewhere these tests skip, and there
(``CONTEXTTHREADS_EXPECT_RAY=1``) its absence is a failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from contextthreads.fluster import (
    Entrypoint,
    LocalCluster,
    RayJob,
    RayLauncher,
    WorkerPoolConfig,
    fluster_ctx_scope,
)

from . import ray_local, tasks
from .engine_support import (
    check_killed_worker_is_retried,
    check_pending_worker_starts,
    check_round_trips,
    engine_pool,
    round_trip_config,
)
from .support import WAIT, Gate, LogWatcher, pid_alive

pytest.importorskip("cloudpickle")

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A connected two-node Ray cluster on 127.0.0.1, shut down (by pid) after the session."""
    why = ray_local.unavailable()
    if why is not None:
        if os.environ.get("CONTEXTTHREADS_EXPECT_RAY") == "1":
            pytest.fail(why)
        pytest.skip(why)
    with ray_local.ray_cluster() as cluster:
        yield cluster


def ray_job(cluster: LocalCluster, job_id: str) -> RayJob:
    handle = cluster.job(job_id)
    assert isinstance(handle, RayJob)
    return handle


def assert_actor_gone(handle: RayJob) -> None:
    """The job's actor is dead (Ray says so within WAIT), and a call to it fails."""
    ray = ray_local.ray_module()
    assert handle.wait_released(WAIT)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(handle.actor.info.remote(0), timeout=WAIT)


def node_ids(ray_cluster: Any) -> set[str]:
    nodes = ray_local.ray_module().nodes()
    return {node["NodeID"] for node in nodes if node["Alive"]}


def test_pool_workers_land_on_both_nodes(ray_cluster: Any, gate: Gate) -> None:
    """A two-worker pool placed by Ray runs one worker under an actor on each node; results
    and context_vars travel, and leaving the pool leaves no actor or worker alive."""
    with engine_pool(RayLauncher(), "j-r", round_trip_config()) as (cluster, pool):
        handles = [ray_job(cluster, job_id) for job_id in pool.job_ids]
        infos = [handle.info(WAIT) for handle in handles]
        assert {info["node_id"] for info in infos} == node_ids(ray_cluster)
        details = pool.status().worker_details
        assert {info["pid"] for info in infos} == {d["pid"] for d in details}
        assert all(d["endpoint_url"].startswith("http://127.0.0.1:") for d in details)
        pids = check_round_trips(pool, gate)
    for handle in handles:
        assert handle.poll() is not None
        assert_actor_gone(handle)
    assert not any(pid_alive(pid) for pid in pids)


def test_secret_never_on_a_command_line(ray_cluster: Any, tmp_path: Path, gate: Gate) -> None:
    """The secret reaches the worker as an argument of the actor's call: it is in neither
    the worker's nor the actor process's command line, and the worker removed it from
    os.environ once read; a job that returns reads 0 and its actor is released."""
    info_path = tmp_path / "info.json"
    with LocalCluster(launcher=RayLauncher()) as cluster, fluster_ctx_scope(cluster.context("j-s")):
        client = cluster.client()
        probe = client.submit(Entrypoint(tasks.write_job_info, (str(info_path),)), name="probe")
        assert client.wait(probe, WAIT) == 0
        blocker = client.submit(tasks.report_then_block, name="b", args=(gate.address,))
        worker_pid = gate.arrive()
        with open(f"/proc/{worker_pid}/stat") as f:
            actor_pid = int(f.read().rsplit(")", 1)[1].split()[1])
        for pid in (worker_pid, actor_pid):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert cluster.secret.encode() not in f.read()
        assert ray_job(cluster, blocker).info(WAIT)["pid"] == worker_pid
        assert_actor_gone(ray_job(cluster, probe))
    info = json.loads(info_path.read_text())
    assert info["job_id"] == probe
    assert info["secret_in_argv"] is False
    assert info["secret_in_environ"] is False


def test_killed_actor_worker_is_retried_elsewhere(ray_cluster: Any, gate: Gate) -> None:
    """A worker whose actor is killed through Ray (ray.kill) while running a task dies with
    it; the task runs again on the other worker, and the job reads as killed."""
    ray = ray_local.ray_module()

    def kill(pid: int) -> str:
        [job_id] = [j for j in pool.job_ids if ray_job(cluster, j).info(WAIT)["pid"] == pid]
        ray.kill(ray_job(cluster, job_id).actor)
        return job_id

    config = WorkerPoolConfig(num_workers=2, max_retries=1)
    with engine_pool(RayLauncher(), "j-k", config) as (cluster, pool):
        killed = check_killed_worker_is_retried(cluster, pool, gate, kill)
        assert not pid_alive(killed)


def test_pool_larger_than_cluster_waits_then_starts(
    ray_cluster: Any, watch_log: Callable[[str], LogWatcher]
) -> None:
    """Three workers on two one-CPU nodes: two start and take tasks, the third stays a
    pending worker (its actor unplaced) until one of the others ends; then it starts and
    serves. Leaving the pool leaves no actor alive."""

    def is_queued(job_id: str) -> bool:
        try:
            ray_job(cluster, job_id).info(0.5)
        except TimeoutError:
            return True
        return False

    config = WorkerPoolConfig(num_workers=3)
    with engine_pool(RayLauncher(), "j-b", config, min_workers=2) as (cluster, pool):
        check_pending_worker_starts(cluster, pool, watch_log, is_queued)
        handles = [ray_job(cluster, job_id) for job_id in pool.job_ids]
    for handle in handles:
        assert_actor_gone(handle)


def test_placement_options_pass_through(ray_cluster: Any) -> None:
    """Node affinity given to the launcher places every job's actor on that node; an actor
    asking for more than any node has stays unplaced, and terminating it drops it."""
    strategies = ray_local.ray_module("ray.util.scheduling_strategies")

    target = sorted(node_ids(ray_cluster))[-1]
    affinity = strategies.NodeAffinitySchedulingStrategy(target, soft=False)
    pinned = RayLauncher(scheduling_strategy=affinity)
    with LocalCluster(launcher=pinned) as cluster, fluster_ctx_scope(cluster.context("j-p")):
        job_id = cluster.client().submit(tasks.block_forever, name="pinned")
        handle = ray_job(cluster, job_id)
        assert handle.info(WAIT)["node_id"] == target
        cluster.client().terminate(job_id)
        assert handle.poll() is not None
    with LocalCluster(launcher=RayLauncher(num_cpus=2)) as cluster:
        with fluster_ctx_scope(cluster.context("j-p")):
            job_id = cluster.client().submit(tasks.square, name="huge", args=(1,))
        handle = ray_job(cluster, job_id)
        with pytest.raises(TimeoutError):
            handle.info(0.5)
        cluster.client().terminate(job_id)
        assert handle.poll() == -signal.SIGKILL
    assert_actor_gone(handle)


def test_launch_without_ray_connection_is_a_clear_error() -> None:
    """Launching from a process not connected to Ray raises RuntimeError saying so, rather
    than starting a Ray of its own."""
    why = ray_local.unavailable()
    if why is not None:
        pytest.skip(why)
    code = (
        "from contextthreads.fluster import RayLauncher\n"
        "try:\n"
        "    RayLauncher().launch('j', ['true'], {})\n"
        "except RuntimeError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=True
    ).stdout
    assert "ray.init(address=...)" in out
