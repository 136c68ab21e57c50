"""Run the contextthreads benchmarks and print a Markdown table of ratios.

Usage: ``python benchmarks/run.py [--smoke] [--case N ...] [--rounds R]``.

Every comparison is timed side by side in this one run: interleaved rounds,
median of the per-round ratios against the baseline, with the interquartile
range. ``--smoke`` runs every case at tiny sizes to check that they work; its
numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Row, format_table


@dataclass(frozen=True)
class Sizes:
    executor_ops: int
    thread_ops: int
    map_ops: int
    memory_items: int
    memory_runs: int
    bind_ops: int
    fluster_ops: int
    rounds: int


FULL = Sizes(
    executor_ops=4000,
    thread_ops=300,
    map_ops=20_000,
    memory_items=100_000,
    memory_runs=4,
    bind_ops=100_000,
    fluster_ops=500,
    rounds=41,
)
SMOKE = Sizes(
    executor_ops=20,
    thread_ops=3,
    map_ops=20,
    memory_items=200,
    memory_runs=1,
    bind_ops=20,
    fluster_ops=5,
    rounds=2,
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    """Return one line naming the date, machine and interpreter of this run."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {_cpu_model()}, "
        f"{os.cpu_count()} CPUs (nproc {usable}), "
        f"{platform.python_implementation()} {platform.python_version()} on {platform.system()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check, don't measure")
    parser.add_argument(
        "--case", type=int, action="append", choices=range(1, 6), help="run only these cases"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds per comparison")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    rounds = args.rounds or sizes.rounds
    cases = set(args.case or range(1, 6))

    print(f"# contextthreads benchmarks{' (smoke: numbers mean nothing)' if args.smoke else ''}")
    print(machine())
    print()
    started = time.perf_counter()
    rows: list[Row] = []
    if 1 in cases:
        import case_executor

        rows += case_executor.run(sizes.executor_ops, rounds)
    if 2 in cases:
        import case_thread

        rows += case_thread.run(sizes.thread_ops, rounds)
    if 3 in cases:
        import case_map

        rows += case_map.run(sizes.map_ops, rounds, sizes.memory_items, sizes.memory_runs)
    if 4 in cases:
        import case_bind

        rows += case_bind.run(sizes.bind_ops, rounds)
    if 5 in cases:
        import case_fluster

        rows += case_fluster.run(sizes.fluster_ops, rounds)
    print(format_table(rows))
    print()
    print(
        f"{rounds} interleaved rounds per comparison; ratio = median over rounds of "
        f"(variant time / baseline time in the same round); IQR = its quartiles. "
        f"Total {time.perf_counter() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
