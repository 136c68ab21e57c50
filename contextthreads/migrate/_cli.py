"""The command line: ``python -m contextthreads.migrate [--check | --diff] PATH...``."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence, TextIO

__all__ = ("main",)

#: Exit codes: nothing to do (or done), something would change, usage or parse error.
OK, WOULD_CHANGE, ERROR = 0, 1, 2

_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})

_NO_LIBCST = (
    "contextthreads.migrate needs libcst, which contextthreads does not install by default: "
    "pip install 'contextthreads[migrate]'"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contextthreads.migrate",
        description=(
            "Rewrite threading.Thread, threading.Timer and concurrent.futures.ThreadPoolExecutor "
            "to their contextthreads drop-ins, leaving everything else byte for byte. "
            "Directories are searched for *.py files."
        ),
        epilog="Exit status: 0 done or nothing to do, 1 --check found files to rewrite, 2 error.",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check",
        action="store_true",
        help="write nothing; list the files that would change and exit 1 if there are any",
    )
    mode.add_argument(
        "--diff", action="store_true", help="write nothing; print a unified diff of the changes"
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Python files or directories")
    return parser


def _python_files(root: Path) -> Iterator[Path]:
    # Hidden directories (.git, .venv), caches and virtualenvs are not the user's code.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _SKIP_DIRS
            and not (Path(dirpath) / d / "pyvenv.cfg").exists()
        )
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name


def _write_atomically(path: Path, data: bytes) -> None:
    # Nothing lost if we are interrupted: the old file stays until the new one is complete.
    mode = path.stat().st_mode
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """Run the migration command on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Single-threaded; reads and writes only the files named or found under the
    directories named.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return exc.code if isinstance(exc.code, int) else ERROR
    try:
        from ._source import rewrite_bytes
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "libcst":
            err.write(f"error: {_NO_LIBCST}\n")
            return ERROR
        raise

    files: list[Path] = []
    status = OK
    for name in args.paths:
        path = Path(name)
        if path.is_dir():
            files.extend(_python_files(path))
        elif path.is_file():
            files.append(path)
        else:
            err.write(f"error: {name}: no such file or directory\n")
            status = ERROR
    changed: list[Path] = []
    for path in files:
        try:
            before = path.read_bytes()
        except OSError as exc:
            err.write(f"error: {path}: cannot read: {exc.strerror or exc}\n")
            status = ERROR
            continue
        try:
            after, encoding = rewrite_bytes(before)
        except SyntaxError as exc:
            err.write(f"error: {path}: cannot parse: {exc}\n")
            status = ERROR
            continue
        if after == before:
            continue
        changed.append(path)
        if args.check:
            out.write(f"would rewrite {path}\n")
        elif args.diff:
            old = before.decode(encoding).splitlines(keepends=True)
            new = after.decode(encoding).splitlines(keepends=True)
            out.writelines(difflib.unified_diff(old, new, f"{path}", f"{path}"))
        else:
            try:
                _write_atomically(path, after)
            except OSError as exc:
                err.write(f"error: {path}: cannot write: {exc.strerror or exc}\n")
                status = ERROR
                continue
            out.write(f"rewrote {path}\n")
    if status == ERROR:
        return ERROR
    if args.check and changed:
        count = len(changed)
        err.write(f"{count} file{'s' if count != 1 else ''} would be rewritten\n")
        return WOULD_CHANGE
    return OK
