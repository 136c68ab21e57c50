"""Parse, rewrite and print source code, keeping its encoding and bytes."""

from __future__ import annotations

from typing import Collection, Optional

import libcst as cst

from ._rewrite import rewrite_module

__all__ = ("mentions_targets", "rewrite_bytes", "rewrite_source")


def mentions_targets(source: str | bytes) -> bool:
    """Return False when ``source`` cannot name Thread, Timer or ThreadPoolExecutor.

    Every way to reach them spells one of those words and imports ``threading``
    or ``concurrent``; a file without both (most of a codebase) is never parsed.
    Source encodings are ASCII-compatible (PEP 263), so bytes are searched as
    they are.
    """
    text = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    return (b"Thread" in text or b"Timer" in text) and (
        b"threading" in text or b"concurrent" in text
    )


def _parse(source: str | bytes) -> cst.Module:
    try:
        return cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        error = SyntaxError(exc.message)
        error.lineno, error.offset = exc.raw_line, exc.raw_column + 1
        raise error from exc


def rewrite_bytes(source: bytes, first_party: Collection[str] = ()) -> Optional[tuple[bytes, str]]:
    """Return ``source`` rewritten, in its own encoding, and that encoding; None if unchanged.

    Raises ``SyntaxError`` if libcst cannot parse it, and ``UnsafeRewrite`` if
    it cannot be rewritten safely. Pure: thread-safe.
    """
    if not mentions_targets(source):
        return None
    module = _parse(source)
    rewritten = rewrite_module(module, first_party)
    if rewritten is module:
        return None
    data = rewritten.bytes
    return (data, rewritten.encoding) if data != source else None


def rewrite_source(source: str, first_party: Collection[str] = ()) -> str:
    """Return ``source`` with Thread, Timer and ThreadPoolExecutor taken from contextthreads.

    See ``contextthreads.migrate.rewrite_source``.
    """
    if not mentions_targets(source):
        return source
    return rewrite_module(_parse(source), first_party).code
