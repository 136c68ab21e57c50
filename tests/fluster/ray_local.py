"""A throwaway Ray cluster on this machine: ``ray.cluster_utils.Cluster`` with nodes on 127.0.0.1.

Used by the Ray tests' session fixture and by benchmark case 5. Its
processes are children of this one, started and stopped by the Cluster
object (by pid); its files live in a temporary directory of its own.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from typing import Any, Iterator

#: Set before Ray is imported, for this process and every Ray process it starts. Ray would
#: otherwise send usage statistics, and turn 127.0.0.1 in ray.init()'s address into this
#: machine's outward address (whose traffic is dropped here), then retry forever; with
#: "clusters" off it keeps the loopback address, and every node is told to use 127.0.0.1.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def ray_module(name: str = "ray") -> Any:
    """Return Ray (or one of its modules), typed loosely: Ray's own hints are partial."""
    return importlib.import_module(name)


def unavailable() -> str | None:
    """Return why no Ray cluster can start here (Ray not installed), or None if one can."""
    if importlib.util.find_spec("ray") is None:
        return "Ray is not installed here (pip install 'contextthreads[ray]'; nox -s tests_ray)"
    return None


@contextlib.contextmanager
def ray_cluster(nodes: int = 2, cpus_per_node: int = 1) -> Iterator[Any]:
    """Start ``nodes`` Ray nodes on 127.0.0.1 (no dashboard), connect to them; yield the Cluster.

    Afterwards this process disconnects and the cluster's processes are shut
    down. Everything Ray writes goes under one temporary directory. Raises
    ``RuntimeError`` if Ray was imported before ``RAY_ENV`` was set (connecting
    would then hang).
    """
    root = tempfile.mkdtemp(prefix="ctt-ray-")
    temp_dir = os.path.join(root, "ray")
    os.mkdir(temp_dir)
    # RAY_TMPDIR: where Ray keeps what is not per session (the current cluster's address).
    env = {**RAY_ENV, "RAY_TMPDIR": root}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        ray = ray_module()
        if ray_module("ray._private.ray_constants").ENABLE_RAY_CLUSTER:
            raise RuntimeError("Ray was imported before ray_local.RAY_ENV was set")
        node = {"num_cpus": cpus_per_node, "node_ip_address": "127.0.0.1"}
        cluster = ray_module("ray.cluster_utils").Cluster(
            initialize_head=True,
            head_node_args={**node, "include_dashboard": False, "temp_dir": temp_dir},
        )
        try:
            for _ in range(nodes - 1):
                cluster.add_node(**node)
            ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
            cluster.wait_for_nodes()
            yield cluster
        finally:
            ray.shutdown()
            cluster.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
