"""Which top-level names are the project's own, as ruff and isort decide it."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

__all__ = ("first_party",)

_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg")


@functools.cache
def _root(directory: Path) -> Optional[Path]:
    for candidate in (directory, *directory.parents):
        if any((candidate / marker).is_file() for marker in _MARKERS):
            return candidate
    return None


@functools.cache
def _top_level(directory: Path) -> frozenset[str]:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return frozenset()
    names = set()
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            names.add(entry.name)
        elif entry.name.endswith(".py"):
            names.add(entry.name[:-3])
    return frozenset(names)


def first_party(path: Path) -> frozenset[str]:
    """Return the first-party top-level names for the file at ``path``.

    Like ruff's defaults: the top package that holds the file, and whatever
    sits at the project root or in its ``src/`` (the root holds
    pyproject.toml, setup.py or setup.cfg; else the current directory).
    """
    path = Path(os.path.abspath(path))
    names = set()
    directory = path.parent
    top = None
    while (directory / "__init__.py").is_file():
        top, directory = directory.name, directory.parent
    if top is not None:
        names.add(top)
    root = _root(path.parent)
    if root is None:
        cwd = Path.cwd()
        root = cwd if cwd in path.parents else None
    if root is not None:
        names |= _top_level(root) | _top_level(root / "src")
    return frozenset(names)
