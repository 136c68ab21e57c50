"""The benchmarks still run: every case at tiny sizes, numbers unchecked.

Targets are read from the full run's table by a person, never asserted here:
timings on a shared machine are noise at this size.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

RUN = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"
MATRIX = RUN.parent / "matrix.py"


def _smoke(*case: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(RUN), "--smoke", *case],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize(
    ("case", "rows"),
    [
        (
            "1",
            [
                "ContextThreadPoolExecutor",
                "submit(copy_context().run, fn)",
                "OpenTelemetry",
                "warm pool, tasks with arguments",
                "warm pool, a few us of Python per task",
                "burst of 20 into a fresh pool",
                "burst of 40 into a fresh pool",
                "8 threads submitting into one warm pool",
                "warm pool, map()",
                *(["warm pool, map(buffersize=16)"] if sys.version_info >= (3, 14) else []),
            ],
        ),
        ("2", ["ContextThread", "ContextTimer"]),
        ("3", ["ContextThreadPoolExecutor.map", "peak RSS"]),
        ("4", ["bind(fn)()"]),
        ("6", ["ContextThreadPoolExecutor (all of it)" if sys.version_info >= (3, 14) else "3.14"]),
        (
            "7",
            [
                "the floor on threading.Timer",
                "| ContextTimer (op by op, process CPU time; wall time ",
            ]
            if sys.version_info < (3, 14)
            else ["3.13 or older"],
        ),
    ],
)
def test_case_runs_and_reports(case: str, rows: list[str]) -> None:
    """Each in-process case runs at smoke size and prints a table row for each of its variants."""
    out = _smoke("--case", case)
    assert "| case | variant |" in out
    for row in rows:
        assert row in out


def test_cases_run_apart_into_one_table() -> None:
    """Several cases, each run in an interpreter of its own, report in one table, in order."""
    out = _smoke("--case", "4", "--case", "2")
    assert out.count("| case | variant |") == 1
    assert out.index("| 2. Thread start+join |") < out.index("| 4. call in a copied context |")


def test_opentelemetry_variant_is_skipped_cleanly_when_absent() -> None:
    """Without opentelemetry-instrumentation-threading, case 1 says so instead of failing."""
    if importlib.util.find_spec("opentelemetry") is not None:
        pytest.skip("opentelemetry is installed here; the variant runs instead")
    out = _smoke("--case", "1")
    assert "skipped: opentelemetry-instrumentation-threading not installed" in out


def test_fluster_case_runs_or_says_why_not() -> None:
    """Case 5 compares the WorkerPool with ProcessPoolExecutor, then pools on each cluster
    engine with local workers (an engine that cannot run here is reported skipped, with why),
    or reports why it cannot run at all."""
    out = _smoke("--case", "5")
    if importlib.util.find_spec("cloudpickle") is None:
        assert "skipped: contextthreads.fluster unavailable" in out
    else:
        assert "WorkerPool no-op round trip" in out
        assert "WorkerPool throughput" in out
        assert "local workers: time to first result" in out
        for engine in ("Slurm", "Ray"):
            assert f"{engine}: time to first result" in out or f"{engine} (skipped: " in out


def test_op_by_op_rounds_alternate_variants_and_restore_gc() -> None:
    """interleave_ops runs the variants op by op, swapping who goes first every op and round.

    Every measured op yields one time per variant, side by side, and the cyclic
    GC, held off while a round runs, is enabled again afterwards.
    """
    import gc

    sys.path.insert(0, str(RUN.parent))
    try:
        from _harness import interleave_ops
    finally:
        sys.path.remove(str(RUN.parent))
    calls: list[str] = []
    gc_during: list[bool] = []

    def op(name: str) -> Callable[[], None]:
        def run() -> None:
            calls.append(name)
            gc_during.append(gc.isenabled())

        return run

    times = interleave_ops({"a": op("a"), "b": op("b")}, ops=3, rounds=2, warmup=1)
    # Warm-up round, then two measured ones: three ops each, every measured op timed.
    assert "".join(calls) == "abbaab" + "baabba" + "abbaab"
    assert [len(times["a"]), len(times["b"])] == [6, 6]
    assert not any(gc_during)
    assert gc.isenabled()


def test_each_variant_is_compared_with_the_baseline_alone() -> None:
    """compare_each gives every variant rounds of its own against the baseline.

    No round runs two variants; within a comparison the pair alternates
    A B B A; the table has the baseline's row once, then one row per variant,
    each with its target.
    """
    sys.path.insert(0, str(RUN.parent))
    try:
        from _harness import compare_each
    finally:
        sys.path.remove(str(RUN.parent))
    calls: list[str] = []

    def variant(name: str) -> Callable[[int], float]:
        def run(ops: int) -> float:
            calls.append(name)
            return float(ops)

        return run

    rows = compare_each(
        "case",
        "base",
        variant("base"),
        {"x": variant("x"), "y": variant("y")},
        ops=2,
        rounds=2,
        targets={"y": "<=1.03x"},
    )
    # Two warm-up rounds, then two measured ones, per comparison.
    assert calls == ["base", "x", "x", "base"] * 2 + ["base", "y", "y", "base"] * 2
    assert [(row.variant, row.ratio, row.target) for row in rows] == [
        ("base", 1.0, ""),
        ("x", 1.0, ""),
        ("y", 1.0, "<=1.03x"),
    ]


@pytest.mark.skipif(
    sys.implementation.name != "cpython", reason="matrix.py runs CPython's interpreters only"
)
def test_matrix_prints_a_table_per_kind_with_a_column_per_interpreter() -> None:
    """matrix.py runs cases 1, 2 and 7 under each interpreter it is given, and prints one
    table of pool shapes and one of start+join, a column per interpreter, with the date,
    the machine and the interpreters above them."""
    proc = subprocess.run(
        [sys.executable, str(MATRIX), "--smoke", "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    version = platform.python_version()
    assert f"nproc {len(os.sched_getaffinity(0))}" in out
    assert f"CPython {version}" in out
    assert f"| `ContextThreadPoolExecutor` vs the stdlib's pool | {version}" in out
    assert f"| start + join | {version}" in out
    for row in ("| burst of 40 into a fresh pool |", "| `ContextThread` vs `Thread` |"):
        assert row in out
    floor = next(
        line for line in out.splitlines() if line.startswith("| `ContextThread` vs the floor")
    )
    assert ("n/a" in floor) == (sys.version_info >= (3, 14))
