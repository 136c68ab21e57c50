"""Case 3: map() over many items: peak RSS, in fresh processes."""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import noop, set_context_vars
from _harness import Row, quartiles

from contextthreads import ContextThreadPoolExecutor

WORKERS = 4
EXECUTORS: dict[str, type[ThreadPoolExecutor]] = {
    "ThreadPoolExecutor.map": ThreadPoolExecutor,
    "ContextThreadPoolExecutor.map": ContextThreadPoolExecutor,
}
CASE = "3. map() over {n} items"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def measure_memory(name: str, n: int) -> dict[str, int]:
    """Run one map() of ``n`` items in this process; return RSS before and peak during, in kB."""
    set_context_vars(10)
    with EXECUTORS[name](WORKERS) as ex:
        for _ in ex.map(noop, range(WORKERS * 10)):
            pass
        before = _status_kb("VmRSS")
        # Linux: reset the peak to the current RSS, so startup does not count.
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")
        for _ in ex.map(noop, range(n)):
            pass
        peak = _status_kb("VmHWM")
    return {"before_kb": before, "peak_kb": peak}


def _memory_rows(n: int, runs: int) -> list[Row]:
    if not Path("/proc/self/status").exists():
        return []
    names = list(EXECUTORS)
    samples: dict[str, list[dict[str, int]]] = {name: [] for name in names}
    for r in range(runs):
        for name in names if r % 2 == 0 else names[::-1]:
            out = subprocess.run(
                [sys.executable, __file__, "--memory", name, str(n)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            samples[name].append(json.loads(out))
    base, ours = samples[names[0]], samples[names[1]]
    rows = []
    for label, key in (("peak RSS", "peak_kb"), ("RSS growth", None)):

        def value(s: dict[str, int], key: str | None = key) -> float:
            return s[key] if key else s["peak_kb"] - s["before_kb"]

        ratios = [value(o) / value(b) for o, b in zip(ours, base)]
        q1, med, q3 = quartiles(ratios)
        rows.append(
            Row(
                CASE.format(n=n),
                names[1],
                names[0],
                med,
                q1,
                q3,
                float("nan"),
                target="<=1.05x" if key else "",
                rounds=runs,
                note=f"{label}, fresh process pairs, baseline median "
                f"{statistics.median(value(b) for b in base) / 1024:.1f} MiB",
            )
        )
    return rows


def run(memory_items: int, memory_runs: int) -> list[Row]:
    """Measure map()'s peak RSS over ``memory_items`` items; return the table rows.

    (map()'s time is one of case 1's shapes.)
    """
    return _memory_rows(memory_items, memory_runs)


if __name__ == "__main__" and sys.argv[1:2] == ["--memory"]:
    print(json.dumps(measure_memory(sys.argv[2], int(sys.argv[3]))))
