"""Case 5: Fluster WorkerPool (2 worker processes) against ProcessPoolExecutor(2).

Same tasks on both: a no-op (``abs(0)``), and ``len()`` of a 1 MB bytes
argument. Builtins, so both sides pickle them by reference whatever the
start method. Measured, interleaved round by round: sequential round trips
(submit, wait, repeat; p50 and p99), and throughput with many tasks in
flight at once.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable

from _harness import Row, quartiles

WORKERS = 2
MB = b"x" * (1 << 20)

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
        return _measure(pool.submit, ppe.submit, ops, rounds)
