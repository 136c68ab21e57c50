"""Migrate a codebase from the stdlib's threads and thread pools to contextthreads.

``python -m contextthreads.migrate [--check | --diff] [-j N] PATH...`` rewrites
the code that starts work with ``threading.Thread``, ``threading.Timer`` and
``concurrent.futures.ThreadPoolExecutor`` so it uses the contextthreads
classes, and never the code that talks about the stdlib classes themselves:

- **Rewritten**: constructions (``Thread(target=f)``), base classes
  (``class Worker(threading.Thread)``), and, inside a class whose base was
  rewritten, calls through that base (``threading.Thread.__init__(self)``).
- **Kept** wherever the class is used as a value: attribute reads and writes
  on it elsewhere (``Thread.start = patched``, ``old = Thread.start``), passing
  it as an argument (``wrap_function_wrapper(threading.Thread, "start", ...)``,
  ``mock.patch.object(threading.Thread, "start")``, ``setattr``, a factory
  like ``field(default_factory=Thread)``), assigning it (``T = Thread``),
  comparisons (``type(t) is Thread``). Annotations and ``isinstance`` /
  ``issubclass`` / ``cast`` keep it too: every contextthreads class subclasses
  the stdlib one, so they stay true. A from-import with no use in its module
  (a re-export, say) is kept as well.
- **Imports**: an import still used after the rewrite stays; one left unused
  goes. ``import contextthreads`` and ``from contextthreads import ...`` go
  where isort and ruff put them: in the third-party section, or as a new
  section after the standard library's.
- **Left alone and reported** (``PATH:LINE: not rewritten: REASON``), a file
  where one class is both built and used as a value (patched and started, say,
  since rewriting only the builds would split the two), or where a name to be
  rewritten is also bound to something else.

Everything else is kept byte for byte: comments, strings, formatting,
encoding, line endings. A second run changes nothing. It needs libcst
(``pip install 'contextthreads[migrate]'``), imported only when a file
mentions one of the classes.
"""

from __future__ import annotations

from typing import Collection

from ._cli import main
from ._problems import Problem, UnsafeRewrite

__all__ = ("Problem", "UnsafeRewrite", "main", "rewrite_source")


def rewrite_source(source: str, *, first_party: Collection[str] = ()) -> str:
    """Return ``source`` with what builds Thread, Timer and ThreadPoolExecutor using contextthreads.

    The rule is the module's (see ``contextthreads.migrate``). Everything else
    is kept byte for byte, and a second call changes nothing. ``first_party``
    names the project's own top-level packages, which isort sorts after
    third-party ones. Raises ``SyntaxError`` if the code cannot be parsed,
    ``UnsafeRewrite`` (with every ``Problem``) if it cannot be rewritten
    safely, and ``ImportError`` if libcst is missing. Pure: thread-safe.
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
    return rewrite(source, first_party)
