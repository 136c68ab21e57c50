"""Run the benchmarks under every interpreter found; print the performance page's tables.

The tables go to docs/explanation/performance.md, and the first, with the line
saying when and where it ran, to the README's Benchmarks section.

Usage: ``python benchmarks/matrix.py [--smoke] [--case N ...] [--python PATH ...]``.

Runs ``run.py --json`` with cases 1 to 4 and 7 (``--case`` picks others) under
CPython 3.9 to 3.15 and free-threaded 3.13t, one interpreter after another,
with this checkout first on ``PYTHONPATH``: nothing to install, since the
cases need only contextthreads (the OpenTelemetry row, which needs
``opentelemetry-instrumentation-threading``, reads "n/a" where it is
missing). Each interpreter is found by ``$CONTEXTTHREADS_PYTHON<VERSION>``
(``CONTEXTTHREADS_PYTHON313T`` for 3.13t), then as ``pythonX.Y`` on ``PATH``,
then under ``~/.pyenv/versions``, then by the workplace's
``../shared/tools/pythonX.Y --where``; ``--python`` names them instead. One
that is not found, or whose run fails, is named under the tables. About a
minute per interpreter.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT)]

from _harness import Row  # noqa: E402
from case_thread_floor import BASELINE, FLOOR, PIECES, TIMER_FLOOR  # noqa: E402

VERSIONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.13t", "3.14", "3.15"]
CASES = [1, 2, 3, 4, 7]
OURS = "ContextThreadPoolExecutor"
#: What a candidate interpreter says it is: "3.13t" for a free-threaded 3.13.
_PROBE = (
    "import sys, sysconfig; free = sysconfig.get_config_var('Py_GIL_DISABLED'); "
    "print('%d.%d%s' % (*sys.version_info[:2], 't' if free else ''), "
    "sys.implementation.name)"
)


def _probe(path: str) -> str | None:
    try:
        out = subprocess.run(
            [path, "-c", _PROBE], capture_output=True, text=True, timeout=300, check=True
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out[1:] == ["cpython"] else None


def find(version: str) -> str | None:
    """Return a CPython ``version`` ("3.13t": free-threaded) found on this machine, or None."""
    candidates = [os.environ.get(f"CONTEXTTHREADS_PYTHON{version.replace('.', '').upper()}")]
    candidates.append(shutil.which(f"python{version}"))
    plain = version.rstrip("t")
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{plain}.*/bin/python{version}")),
        reverse=True,
    )
    tool = ROOT.parent / "shared" / "tools" / f"python{version}"
    if tool.exists():
        where = subprocess.run(
            ["bash", str(tool), "--where"], capture_output=True, text=True, check=False
        )
        candidates.append(where.stdout.strip() or None)
    return next((c for c in candidates if c and _probe(c) == version), None)


def run_one(python: str, cases: list[int], smoke: bool) -> dict[str, Any]:
    """Run ``run.py --json`` for ``cases`` under ``python``; return what it printed."""
    command = [python, str(HERE / "run.py"), "--json"]
    for case in cases:
        command += ["--case", str(case)]
    if smoke:
        command.append("--smoke")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True, env=env).stdout
    found: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return found


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row["ratio"] != row["ratio"]:
        return "n/a"
    cell = f"{row['ratio']:.3f}x"
    if Row(**row).verdict() == "MISSED":
        cell = f"**{cell}** missed"
    if row["wall_ratio"] == row["wall_ratio"]:
        cell += f" ({row['wall_ratio']:.3f}x)"
    return cell


def _full(row: dict[str, Any]) -> str:
    match = re.search(r"(\d+) full", row["note"])
    return match.group(1) if match else "n/a"


def _label(row: dict[str, Any]) -> str:
    shape = row["case"].split(": ", 1)[-1]
    return shape if row["variant"] == OURS else f"{shape}: {row['variant']}"


#: The thread rows: (label in the table, the run.py row's variant and baseline).
THREAD_ROWS = [
    ("`ContextThread` vs `Thread`", "ContextThread", BASELINE),
    *(
        (f"{piece} vs `Thread`" if i == 0 else piece, piece, BASELINE)
        for i, piece in enumerate(PIECES)
    ),
    ("`ContextThread` vs the floor", "ContextThread", FLOOR),
    ("`ContextTimer` vs `Timer`", "ContextTimer", "threading.Timer"),
    ("the floor on `Timer` vs `Timer`", TIMER_FLOOR, "threading.Timer"),
    ("`ContextTimer` vs the floor on `Timer`", "ContextTimer", TIMER_FLOOR),
]


def _grid(title: str, labels: list[str], grid: dict[str, dict[str, str]]) -> list[str]:
    lines = [f"| {title} | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for key, cells in grid.items():
        lines.append(f"| {key} | " + " | ".join(cells.get(x, "n/a") for x in labels) + " |")
    return lines


def tables(results: dict[str, dict[str, Any]]) -> str:
    """Return the Markdown tables for ``results`` (interpreter label -> run.py's JSON)."""
    labels = list(results)
    pool: dict[str, dict[str, str]] = {}
    collections: dict[str, dict[str, str]] = {}
    other: dict[str, dict[str, str]] = {}
    threads: dict[str, dict[str, str]] = {title: {} for title, _, _ in THREAD_ROWS}
    for label, found in results.items():
        for row in found["rows"]:
            shape = row["case"].split(": ", 1)[-1]
            ours = row["variant"] != row["baseline"]
            if row["case"].startswith("1.") and "burst of" in shape:
                key = f"{shape}: full GCs per burst, stdlib / ours"
                seen = collections.setdefault(key, {})
                seen[label] = " / ".join(filter(None, [seen.get(label), _full(row)]))
            if row["case"].startswith("1.") and ours:
                pool.setdefault(_label(row), {})[label] = _cell(row)
            elif row["case"][:2] in ("3.", "4.") and ours:
                what = row["note"].split(",")[0] if row["note"] else ""
                key = f"{row['case']}: {row['variant']}" + (f", {what}" if what else "")
                other.setdefault(key, {})[label] = _cell(row)
            for title, variant, baseline in THREAD_ROWS:
                if (row["variant"], row["baseline"]) == (variant, baseline):
                    threads[title][label] = _cell(row)
    lines = _grid(
        "`ContextThreadPoolExecutor` vs the stdlib's pool", labels, {**pool, **collections}
    )
    lines += ["", *_grid("start + join", labels, threads)]
    if other:
        lines += ["", *_grid("`map()` memory, `bind()`", labels, other)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check, don't measure")
    parser.add_argument("--case", type=int, action="append", help="cases (default: 1-4, 7)")
    parser.add_argument(
        "--python", action="append", help="run under these interpreters instead of finding them"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    pythons = {path: path for path in args.python} if args.python else None
    if pythons is None:
        found = {version: find(version) for version in VERSIONS}
        missing = [version for version, path in found.items() if path is None]
        pythons = {version: path for version, path in found.items() if path}
    else:
        missing = []
    results: dict[str, dict[str, Any]] = {}
    failed = 0
    for name, path in pythons.items():
        print(f"{name}: {path} ...", file=sys.stderr, flush=True)
        try:
            found_one = run_one(path, args.case or CASES, args.smoke)
        except (OSError, subprocess.CalledProcessError, ValueError) as error:
            # One interpreter's failure (its stderr is above) leaves the others' tables.
            missing.append(f"{name} (failed: {error})")
            failed += 1
            continue
        results[found_one["version"]] = found_one
        print(f"{name}: {found_one['seconds']:.0f} s", file=sys.stderr, flush=True)
    took = time.perf_counter() - started
    hardware = sorted({found_one["hardware"] for found_one in results.values()})
    smoke = " (smoke: numbers mean nothing)" if args.smoke else ""
    print(f"# contextthreads benchmark matrix{smoke}")
    print()
    interpreters = ", ".join(found_one["interpreter"] for found_one in results.values())
    print(
        f"Started {when} on {'; '.join(hardware)}; {interpreters}; "
        f"{took / 60:.1f} minutes in all." + (f" Not run: {', '.join(missing)}." if missing else "")
    )
    print()
    print(tables(results))
    print()
    print(
        "Targets: pool tasks at most 1.03x in every shape, below 1x where the pool is full; "
        "start+join before 3.14 within half a percentage point of the floor (1.005x against "
        "it), from 3.14 at most 1.02x. Pool rounds run with the GC on, from a fresh collection; "
        "start+join op by op, the median over pairs side by side of the process's CPU time "
        "(in brackets, of wall time)."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
