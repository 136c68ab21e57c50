"""Why a file was left alone: the one exception the rewriter raises besides SyntaxError."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ("Problem", "UnsafeRewrite")


class Problem(NamedTuple):
    """One reason a file cannot be rewritten safely, at a 1-based line.

    Attributes:
        line: Where, counting from 1.
        reason: Why, in words.
    """

    line: int
    reason: str


class UnsafeRewrite(Exception):
    """The source cannot be rewritten without changing what it means; it is left alone.

    Its message joins the problems as ``line N: reason``.

    Args:
        problems: Every reason found, in line order; kept as ``problems``.
    """

    def __init__(self, problems: tuple[Problem, ...]) -> None:
        super().__init__("; ".join(f"line {p.line}: {p.reason}" for p in problems))
        self.problems = problems
