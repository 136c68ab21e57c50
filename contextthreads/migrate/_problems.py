"""Why a file was left alone: the one exception the rewriter raises besides SyntaxError."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ("Problem", "UnsafeRewrite")


class Problem(NamedTuple):
    """One reason a file cannot be rewritten safely, at a 1-based line."""

    line: int
    reason: str


class UnsafeRewrite(Exception):
    """The source cannot be rewritten without changing what it means; it is left alone.

    ``problems`` holds every reason found, in line order.
    """

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        super().__init__("; ".join(f"line {p.line}: {p.reason}" for p in problems))
        self.problems = problems
