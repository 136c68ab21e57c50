"""Interleaved side-by-side timing: rounds of A B B A ..., median of paired ratios.

Absolute times on a shared machine are noise; the ratio of two variants timed
back to back is not, or much less so. Each round runs every variant once (the
order alternates between rounds so neither always goes first), and each
variant's time is divided by the baseline's in that same round. Operations
long enough to time singly (a thread's start and join) alternate op by op
instead, and each op is divided by the baseline op beside it: the median of
ten thousand such pairs moves by a few tenths of a percent between runs, where
the median of a few hundred per-round ratios moved by 1%. Those ops are timed in
the process's CPU time (all its threads), which leaves out the wait for a new
thread to be scheduled; their wall-time ratio is reported beside. The table
reports the median of the ratios and their interquartile range.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

# A variant takes the number of operations to run and returns the seconds they
# took; it does its own setup outside the timed region.
Variant = Callable[[int], float]


@dataclass
class Row:
    """One line of the results table: a variant measured against a baseline."""

    case: str
    variant: str
    baseline: str
    ratio: float
    q1: float
    q3: float
    per_op_us: float
    target: str = ""
    note: str = ""
    rounds: int = 0
    #: For ops timed by the process's CPU time: the same median ratio in wall time.
    wall_ratio: float = float("nan")

    def verdict(self) -> str:
        if not self.target or self.ratio != self.ratio:
            return ""
        if self.target.endswith("us p50"):  # an absolute bound on the median time
            return "ok" if self.per_op_us <= float(self.target[2:-6]) else "MISSED"
        limit = float(self.target.strip("<=>x "))
        if self.target.startswith(">="):
            return "ok" if self.ratio >= limit else "MISSED"
        return "ok" if self.ratio <= limit else "MISSED"


@contextlib.contextmanager
def _gc_held_off() -> Iterator[None]:
    """Collect, then keep the cyclic GC off for the block: no collection lands in a timing."""
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def timed(fn: Callable[[], object], *, gc_on: bool = False) -> float:
    """Return the seconds ``fn()`` takes, with the cyclic GC held off meanwhile.

    With ``gc_on``, the GC runs as in any program, from a fresh collection: for
    work whose collections are part of its cost (many objects alive at once).
    """
    if gc_on:
        gc.collect()
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    with _gc_held_off():
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """Return (q1, median, q3) of ``values``."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def interleave(
    variants: dict[str, Variant],
    ops: int,
    rounds: int,
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Run every variant once per round, alternating the order; return per-round times."""
    names = list(variants)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            t = variants[name](ops)
            if r >= warmup:
                times[name].append(t)
    return times


def interleave_ops(
    ops_variants: dict[str, Callable[[], object]],
    ops: int,
    rounds: int,
    warmup: int = 2,
) -> dict[str, list[tuple[float, float]]]:
    """Like ``interleave``, but alternate the variants op by op; return every op's times.

    For operations long enough to time one by one (a thread's start and join):
    each op of one variant runs next to an op of the other, so the machine's
    state changes far less between the two than over a whole round. Each op
    gives (wall time, the process's CPU time in all its threads); the i-th of
    every variant comes from the same step, side by side.
    """
    names = list(ops_variants)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    wall, cpu = time.perf_counter, time.process_time
    for r in range(warmup + rounds):
        with _gc_held_off():
            for i in range(ops):
                order = names if (r + i) % 2 == 0 else names[::-1]
                for name in order:
                    op = ops_variants[name]
                    started, used = wall(), cpu()
                    op()
                    used, elapsed = cpu() - used, wall() - started
                    if r >= warmup:
                        times[name].append((elapsed, used))
    return times


def compare_ops(
    case: str,
    baseline: str,
    ops_variants: dict[str, Callable[[], object]],
    ops: int,
    rounds: int,
    targets: dict[str, str] | None = None,
) -> list[Row]:
    """Time two ops side by side, op by op; return the baseline's row and the other's.

    The ratio is the median over steps of (the op's CPU time / the baseline
    op's beside it), and ``wall_ratio`` the same in wall time; per op, the
    median wall time. CPU time leaves out the wait for a new thread to be
    scheduled, which load on a shared machine lengthens at random: the
    ratios of single ops then spread 0.8x to 1.25x in wall time, against
    0.98x to 1.02x in CPU time.
    """
    times = interleave_ops(ops_variants, ops, rounds)
    base = times[baseline]
    rows = []
    for name, ts in times.items():
        ratios = [used / base_used for (_, used), (_, base_used) in zip(ts, base) if base_used]
        wall = [elapsed / base_elapsed for (elapsed, _), (base_elapsed, _) in zip(ts, base)]
        target = (targets or {}).get(name, "")
        row = _row(case, name, baseline, [elapsed for elapsed, _ in ts], ratios, 1, target)
        row.wall_ratio = statistics.median(wall)
        row.note = "op by op, process CPU time"
        rows.append(row)
    return rows


def compare(
    case: str,
    baseline: str,
    variants: dict[str, Variant],
    ops: int,
    rounds: int,
    targets: dict[str, str] | None = None,
    warmup: int = 2,
) -> list[Row]:
    """Time ``variants`` interleaved and return one Row per non-baseline variant."""
    return rows_for(case, baseline, interleave(variants, ops, rounds, warmup), ops, targets)


def compare_each(
    case: str,
    baseline: str,
    base: Variant,
    variants: dict[str, Variant],
    ops: int,
    rounds: int,
    targets: dict[str, str] | None = None,
) -> list[Row]:
    """Time each of ``variants`` against ``base`` in rounds of its own; return the table rows.

    With several variants interleaved at once each keeps its place among the
    others (the middle one is never next to the baseline in the same way),
    which moved a median by a percent or two here: as much as the overheads
    being measured. A pair alternates A B B A, favouring neither side.
    """
    rows: list[Row] = []
    for name, variant in variants.items():
        found = compare(case, baseline, {baseline: base, name: variant}, ops, rounds, targets)
        # The baseline's own row once, at the top.
        rows += found[1:] if rows else found
    return rows


def rows_for(
    case: str,
    baseline: str,
    times: dict[str, list[float]],
    ops: int,
    targets: dict[str, str] | None = None,
) -> list[Row]:
    """Return the table rows for per-round ``times``: each variant's ratios to the baseline's."""
    base = times[baseline]
    rows = [_row(case, baseline, baseline, base, [1.0] * len(base), ops, "")]
    for name, ts in times.items():
        if name == baseline:
            continue
        ratios = [t / b for t, b in zip(ts, base)]
        rows.append(_row(case, name, baseline, ts, ratios, ops, (targets or {}).get(name, "")))
    return rows


def _row(
    case: str,
    name: str,
    baseline: str,
    times: list[float],
    ratios: list[float],
    ops: int,
    target: str,
) -> Row:
    q1, med, q3 = quartiles(ratios)
    return Row(
        case=case,
        variant=name,
        baseline=baseline,
        ratio=med,
        q1=q1,
        q3=q3,
        per_op_us=statistics.median(times) / ops * 1e6,
        target=target,
        rounds=len(times),
    )


def format_table(rows: Sequence[Row]) -> str:
    """Return ``rows`` as a Markdown table."""
    lines = [
        "| case | variant | vs | median ratio | IQR | rounds | per op (us) | target |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for row in rows:
        if row.variant == row.baseline:
            ratio, iqr = "1 (baseline)", ""
        elif row.ratio != row.ratio:
            ratio, iqr = "n/a", ""
        else:
            ratio = f"{row.ratio:.3f}x"
            iqr = f"{row.q1:.3f}-{row.q3:.3f}"
        target = f"{row.target} {row.verdict()}".strip()
        per_op = f"{row.per_op_us:.2f}" if row.per_op_us == row.per_op_us else ""
        note = row.note
        if row.variant != row.baseline and row.wall_ratio == row.wall_ratio:
            note += f"; wall time {row.wall_ratio:.3f}x"
        unit = f" ({note})" if note else ""
        lines.append(
            f"| {row.case} | {row.variant}{unit} | {row.baseline} | {ratio} | {iqr} "
            f"| {row.rounds or ''} | {per_op} | {target} |"
        )
    return "\n".join(lines)
