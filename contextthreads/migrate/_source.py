"""Parse, rewrite and print source code, keeping its encoding and bytes."""

from __future__ import annotations

import libcst as cst

from ._rewrite import rewrite_module

__all__ = ("rewrite_bytes", "rewrite_source")


def _parse(source: str | bytes) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        error = SyntaxError(exc.message)
        error.lineno, error.offset = exc.raw_line, exc.raw_column + 1
        raise error from exc


def rewrite_bytes(source: bytes) -> tuple[bytes, str]:
    """Return ``source`` rewritten, in its own encoding, and that encoding.

    Raises ``SyntaxError`` if libcst cannot parse it. Pure: thread-safe.
    """
    module = rewrite_module(_parse(source))
    return module.bytes, module.encoding


def rewrite_source(source: str) -> str:
    """Return ``source`` with Thread, Timer and ThreadPoolExecutor taken from contextthreads.

    Everything else is kept byte for byte; the result of a second call is the
    same as the first. Raises ``SyntaxError`` if the code cannot be parsed.
    Pure: thread-safe.
    """
    return rewrite_module(_parse(source)).code
