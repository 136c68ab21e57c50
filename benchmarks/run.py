"""Run the contextthreads benchmarks and print a Markdown table of ratios.

Usage: ``python benchmarks/run.py [--smoke] [--case N ...] [--rounds R] [--json]``.

Every comparison is timed side by side in one process: interleaved rounds (or
ops, for a thread's start+join), median of the paired ratios against the
baseline, with the interquartile range. Each case runs in a fresh interpreter
of its own. ``--smoke`` runs every case at tiny sizes to check that they work;
its numbers mean nothing. ``--json`` prints the rows and what they ran on as
one JSON object, for ``matrix.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Row, format_table


@dataclass(frozen=True)
class Sizes:
    """Operations per round, and rounds, for each case."""

    executor_ops: int
    executor_rounds: int
    burst_ops: int
    burst_rounds: int
    thread_ops: int
    thread_rounds: int
    memory_items: int
    memory_runs: int
    bind_ops: int
    bind_rounds: int
    fluster_ops: int
    fluster_rounds: int


# Short rounds, many of them: a round pairs each variant with the baseline run
# just before or after it, so slow drift in the machine's load cancels out,
# and the median over many pairs damps the scheduling noise of each.
FULL = Sizes(
    executor_ops=500,
    executor_rounds=201,
    burst_ops=20_000,
    burst_rounds=15,
    thread_ops=100,
    thread_rounds=101,
    memory_items=100_000,
    memory_runs=5,
    bind_ops=20_000,
    bind_rounds=101,
    fluster_ops=500,
    fluster_rounds=10,
)
SMOKE = Sizes(
    executor_ops=20,
    executor_rounds=2,
    burst_ops=40,
    burst_rounds=2,
    thread_ops=3,
    thread_rounds=2,
    memory_items=200,
    memory_runs=1,
    bind_ops=20,
    bind_rounds=2,
    fluster_ops=5,
    fluster_rounds=1,
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware() -> str:
    """Return the CPU model and how many CPUs this process may use."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    return f"{_cpu_model()}, {os.cpu_count()} CPUs (nproc {usable}), {platform.system()}"


def interpreter() -> str:
    """Return this interpreter's name and version, and whether it is free-threaded."""
    free = " free-threaded" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
    return f"{platform.python_implementation()} {platform.python_version()}{free}"


def machine() -> str:
    """Return one line naming the date, machine and interpreter of this run."""
    return f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {hardware()}, {interpreter()}"


def run_cases(cases: set[int], sizes: Sizes, rounds: int | None) -> list[Row]:
    """Run ``cases`` in this process, in order; return their table rows."""
    rows: list[Row] = []
    if 1 in cases:
        import case_executor

        rows += case_executor.run(
            sizes.executor_ops,
            rounds or sizes.executor_rounds,
            sizes.burst_ops,
            rounds or sizes.burst_rounds,
        )
    if 2 in cases:
        import case_thread

        rows += case_thread.run(sizes.thread_ops, rounds or sizes.thread_rounds)
    if 3 in cases:
        import case_map

        rows += case_map.run(sizes.memory_items, sizes.memory_runs)
    if 4 in cases:
        import case_bind

        rows += case_bind.run(sizes.bind_ops, rounds or sizes.bind_rounds)
    if 5 in cases:
        import case_fluster

        rows += case_fluster.run(sizes.fluster_ops, rounds or sizes.fluster_rounds)
    if 6 in cases:
        import case_floor

        rows += case_floor.run(sizes.executor_ops, rounds or sizes.executor_rounds)
    if 7 in cases:
        import case_thread_floor

        rows += case_thread_floor.run(sizes.thread_ops, rounds or sizes.thread_rounds)
    return rows


def run_case_apart(case: int, smoke: bool, rounds: int | None) -> list[Row]:
    """Run one case in a fresh interpreter, with this one's flags; return its table rows.

    A case must not inherit what another did to the interpreter. Case 1
    switches OpenTelemetry's instrumentation on and off a thousand times, and
    each switch patches ``threading.Thread``; past CPython's limit on versions
    of one class, attribute lookups on ``Thread`` and its subclasses are no
    longer specialised, and start+join timed later in the same process put ours
    1 to 2% further behind the stdlib's than in a process of its own.
    """
    command = [
        sys.executable,
        # The -X and -W options this interpreter runs with (thread_inherit_context...).
        *subprocess._args_from_interpreter_flags(),
        __file__,
        "--rows-json",
        "--case",
        str(case),
    ]
    if smoke:
        command.append("--smoke")
    if rounds:
        command += ["--rounds", str(rounds)]
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
    # The last line: worker processes a case starts share its stdout.
    return [Row(**fields) for fields in json.loads(out.strip().splitlines()[-1])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check, don't measure")
    parser.add_argument(
        "--case",
        type=int,
        action="append",
        choices=range(1, 8),
        help=(
            "run only these cases (6, where a pool task's overhead goes on 3.14, and 7, a thread "
            "start's floor before 3.14, run only on request)"
        ),
    )
    parser.add_argument(
        "--rounds", type=int, help="interleaved rounds per comparison (default: per case)"
    )
    parser.add_argument(
        "--json", action="store_true", help="print the rows and the machine as JSON, no table"
    )
    # Internal: run the cases here and print their rows as JSON (see run_case_apart).
    parser.add_argument("--rows-json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    cases = set(args.case or range(1, 6))
    if args.rows_json:
        rows = run_cases(cases, sizes, args.rounds)
        print(json.dumps([dataclasses.asdict(row) for row in rows]))
        return 0

    started = time.perf_counter()
    when = time.gmtime()
    if not args.json:
        smoke = " (smoke: numbers mean nothing)" if args.smoke else ""
        print(f"# contextthreads benchmarks{smoke}")
        print(machine())
        print()
    rows = []
    for case in sorted(cases):
        rows += run_case_apart(case, args.smoke, args.rounds)
    took = time.perf_counter() - started
    if args.json:
        found = {
            "started": time.strftime("%Y-%m-%d %H:%M UTC", when),
            "hardware": hardware(),
            "interpreter": interpreter(),
            "version": platform.python_version()
            + ("t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""),
            "seconds": took,
            "rows": [dataclasses.asdict(row) for row in rows],
        }
        print(json.dumps(found))
        return 0
    print(format_table(rows))
    print()
    print(
        "Each case in a fresh interpreter; interleaved rounds, or ops, per comparison (see the "
        "table's notes); ratio = median over rounds of (variant time / baseline time in the same "
        "round), or over pairs of ops side by side; IQR = its quartiles. "
        f"Total {took:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
