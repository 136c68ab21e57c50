"""Case 5: Fluster WorkerPool (2 worker processes) against ProcessPoolExecutor(2), and on engines.

Same tasks on both: a no-op (``abs(0)``), and ``len()`` of a 1 MB bytes
argument. Builtins, so both sides pickle them by reference whatever the
start method. Measured, interleaved round by round: sequential round trips
(submit, wait, repeat; p50 and p99), and throughput with many tasks in
flight at once.

Then the same pool placed by each cluster engine that can run here (a
throwaway two-node Slurm, a two-node Ray on 127.0.0.1, started as the tests
start them), against local workers, a new pool per engine per round: the
time from ``WorkerPool()`` to its first result, and throughput.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import tempfile
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

from _harness import Row, quartiles

WORKERS = 2
MB = b"x" * (1 << 20)
ENGINES_CASE = "5. fluster WorkerPool(2) on cluster engines vs local workers"
#: Where the tests' package ``fluster`` lives, with its throwaway-cluster helpers
#: (``fluster.slurm_daemons``, ``fluster.ray_local``).
TESTS = Path(__file__).resolve().parent.parent / "tests"
#: Bound on a pool's start on an engine (placement included).
ENGINE_WAIT = 120.0

Submit = Callable[..., "Future[Any]"]


def available() -> str | None:
    """Return why case 5 cannot run here, or None if it can."""
    try:
        import cloudpickle  # noqa: F401

        import contextthreads.fluster  # noqa: F401
    except ImportError as exc:
        return f"contextthreads.fluster unavailable: {exc}"
    return None


def _round_trips(submit: Submit, n: int, fn: Callable[..., Any], *args: Any) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        submit(fn, *args).result(timeout=60)
        times.append(time.perf_counter() - start)
    return times


def _in_flight(submit: Submit, n: int) -> float:
    start = time.perf_counter()
    futures = [submit(abs, 0) for _ in range(n)]
    for f in futures:
        f.result(timeout=60)
    return time.perf_counter() - start


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure(pool_submit: Submit, ppe_submit: Submit, ops: int, rounds: int) -> list[Row]:
    case = "5. fluster WorkerPool(2) vs ProcessPoolExecutor(2)"
    names = ("WorkerPool", "ProcessPoolExecutor")
    submits = dict(zip(names, (pool_submit, ppe_submit)))
    seq: dict[str, list[list[float]]] = {name: [] for name in names}
    big: dict[str, list[list[float]]] = {name: [] for name in names}
    flight: dict[str, list[float]] = {name: [] for name in names}
    seq_ops = max(1, ops // 5)
    big_ops = max(1, ops // 50)
    for r in range(rounds + 1):
        for name in names if r % 2 == 0 else names[::-1]:
            s = submits[name]
            samples = (
                _round_trips(s, seq_ops, abs, 0),
                _round_trips(s, big_ops, len, MB),
                _in_flight(s, ops),
            )
            if r == 0:
                continue  # warm-up: connections, imports, page cache
            seq[name].append(samples[0])
            big[name].append(samples[1])
            flight[name].append(samples[2])

    rows = []
    for label, data in (("no-op round trip", seq), ("1 MB argument round trip", big)):
        ours = [t for rnd in data["WorkerPool"] for t in rnd]
        theirs = [t for rnd in data["ProcessPoolExecutor"] for t in rnd]
        ratios = [
            statistics.median(a) / statistics.median(b)
            for a, b in zip(data["WorkerPool"], data["ProcessPoolExecutor"])
        ]
        q1, med, q3 = quartiles(ratios)
        rows.append(
            Row(
                case,
                f"WorkerPool {label}",
                "ProcessPoolExecutor",
                med,
                q1,
                q3,
                _percentile(ours, 0.5) * 1e6,
                target="<=1000us p50" if label.startswith("no-op") else "",
                rounds=len(ratios),
                note=(
                    f"p50 {_percentile(ours, 0.5) * 1e6:.0f} us, p99 "
                    f"{_percentile(ours, 0.99) * 1e6:.0f} us; ProcessPoolExecutor p50 "
                    f"{_percentile(theirs, 0.5) * 1e6:.0f} us, p99 "
                    f"{_percentile(theirs, 0.99) * 1e6:.0f} us"
                ),
            )
        )
    ratios = [b / a for a, b in zip(flight["WorkerPool"], flight["ProcessPoolExecutor"])]
    q1, med, q3 = quartiles(ratios)
    rows.append(
        Row(
            case,
            f"WorkerPool throughput, {ops} no-ops in flight",
            "ProcessPoolExecutor",
            med,
            q1,
            q3,
            statistics.median(flight["WorkerPool"]) / ops * 1e6,
            target=">=0.5x",
            rounds=len(ratios),
            note=(
                f"throughput ratio; {ops / statistics.median(flight['WorkerPool']):.0f} vs "
                f"{ops / statistics.median(flight['ProcessPoolExecutor']):.0f} tasks/s"
            ),
        )
    )
    return rows


def run(ops: int, rounds: int) -> list[Row]:
    """Start a LocalCluster pool and a ProcessPoolExecutor, both of 2 workers; compare them."""
    why = available()
    if why is not None:
        return [
            Row(
                "5. fluster WorkerPool(2) vs ProcessPoolExecutor(2)",
                "WorkerPool",
                "ProcessPoolExecutor",
                float("nan"),
                float("nan"),
                float("nan"),
                float("nan"),
                note=f"skipped: {why}",
            )
        ]
    from contextthreads.fluster import (
        LocalCluster,
        WorkerPool,
        WorkerPoolConfig,
        fluster_ctx_scope,
    )

    config = WorkerPoolConfig(num_workers=WORKERS)
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(LocalCluster())
        stack.enter_context(fluster_ctx_scope(cluster.context("job-bench")))
        pool = stack.enter_context(WorkerPool(cluster.client(), config, timeout=60))
        ppe = stack.enter_context(ProcessPoolExecutor(WORKERS))
        pool.wait_for_workers(timeout=60)
        rows = _measure(pool.submit, ppe.submit, ops, rounds)
    # Fewer rounds: each starts a pool per engine, a second or two apiece.
    return rows + _engine_rows(ops, max(1, rounds // 2))


def _start_engines(stack: contextlib.ExitStack) -> tuple[dict[str, Any], dict[str, str]]:
    """Start every engine that can run here; return launchers by name, and why others cannot."""
    from contextthreads.fluster import LocalProcessLauncher, RayLauncher, SlurmLauncher

    sys.path.insert(0, str(TESTS))
    from fluster import ray_local, slurm_daemons

    launchers: dict[str, Any] = {"local workers": LocalProcessLauncher()}
    skipped = {}
    why = slurm_daemons.unavailable()
    if why is not None:
        skipped["Slurm"] = why
    else:
        slurm = stack.enter_context(slurm_daemons.SlurmCluster())
        out = stack.enter_context(tempfile.TemporaryDirectory())
        launchers["Slurm"] = SlurmLauncher(slurm_conf=str(slurm.conf), output=f"{out}/%j.out")
    why = ray_local.unavailable()
    if why is not None:
        skipped["Ray"] = why
    else:
        stack.enter_context(ray_local.ray_cluster())
        launchers["Ray"] = RayLauncher()
    return launchers, skipped


def _pool_round(cluster: Any, ops: int) -> tuple[float, float]:
    """Start a pool, time its first result, then ``ops`` no-ops in flight; shut it down."""
    from contextthreads.fluster import WorkerPool, WorkerPoolConfig, fluster_ctx_scope

    config = WorkerPoolConfig(num_workers=WORKERS)
    with fluster_ctx_scope(cluster.context("job-engines")):
        start = time.perf_counter()
        with WorkerPool(cluster.client(), config, timeout=60, startup_timeout=ENGINE_WAIT) as pool:
            pool.submit(abs, 0).result(timeout=ENGINE_WAIT)
            first = time.perf_counter() - start
            pool.wait_for_workers(timeout=ENGINE_WAIT)
            return first, _in_flight(pool.submit, ops)


def _engine_rows(ops: int, rounds: int) -> list[Row]:
    """Time each available engine's pool against local workers' over interleaved rounds."""
    from contextthreads.fluster import LocalCluster

    with contextlib.ExitStack() as stack:
        launchers, skipped = _start_engines(stack)
        clusters = {
            name: stack.enter_context(LocalCluster(launcher=launcher))
            for name, launcher in launchers.items()
        }
        names = list(clusters)
        first: dict[str, list[float]] = {name: [] for name in names}
        flight: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                seconds_to_first, seconds_in_flight = _pool_round(clusters[name], ops)
                first[name].append(seconds_to_first)
                flight[name].append(seconds_in_flight)
    local = "local workers"
    rows = []
    for name in names:
        q1, med, q3 = quartiles([a / b for a, b in zip(first[name], first[local])])
        rows.append(
            Row(
                ENGINES_CASE,
                f"{name}: time to first result",
                local,
                med,
                q1,
                q3,
                statistics.median(first[name]) * 1e6,
                rounds=rounds,
                note=f"{statistics.median(first[name]) * 1e3:.0f} ms from WorkerPool()",
            )
        )
        q1, med, q3 = quartiles([b / a for a, b in zip(flight[name], flight[local])])
        rows.append(
            Row(
                ENGINES_CASE,
                f"{name}: throughput, {ops} no-ops in flight",
                local,
                med,
                q1,
                q3,
                statistics.median(flight[name]) / ops * 1e6,
                rounds=rounds,
                note=f"throughput ratio; {ops / statistics.median(flight[name]):.0f} tasks/s",
            )
        )
    nan = float("nan")
    for name, why in skipped.items():
        rows.append(Row(ENGINES_CASE, name, local, nan, nan, nan, nan, note=f"skipped: {why}"))
    return rows
