"""Migrate a codebase from the stdlib's threads and thread pools to contextthreads.

``python -m contextthreads.migrate [--check | --diff] PATH...`` rewrites
imports and uses of ``threading.Thread``, ``threading.Timer`` and
``concurrent.futures.ThreadPoolExecutor`` to contextthreads, and leaves
everything else byte for byte. Type annotations and ``isinstance`` checks
keep the stdlib class, which every contextthreads class subclasses.

It needs libcst (``pip install 'contextthreads[migrate]'``), imported only
when something is rewritten.
"""

from __future__ import annotations

from ._cli import main

__all__ = ("main", "rewrite_source")


def rewrite_source(source: str) -> str:
    """Return ``source`` with Thread, Timer and ThreadPoolExecutor taken from contextthreads.

    Everything else is kept byte for byte, and a second call changes nothing.
    Raises ``SyntaxError`` if the code cannot be parsed, and ``ImportError``
    if libcst is missing. Pure: thread-safe.
    """
    try:
        from ._source import rewrite_source as rewrite
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "libcst":
            raise ImportError(
                "contextthreads.migrate needs libcst: pip install 'contextthreads[migrate]'",
                name=exc.name,
            ) from exc
        raise
    return rewrite(source)
