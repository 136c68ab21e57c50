"""The command line: ``python -m contextthreads.migrate [--check | --diff] [-j N] PATH...``."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Optional, Sequence, TextIO

__all__ = ("main",)

#: Exit codes: nothing to do (or done), something would change, usage or parse error.
OK, WOULD_CHANGE, ERROR = 0, 1, 2

_SKIP_DIRS = frozenset({"__pycache__", "node_modules"})
# Below this many files to parse per worker, starting workers costs more than it saves.
_FILES_PER_WORKER = 4

_NO_LIBCST = (
    "contextthreads.migrate needs libcst, which contextthreads does not install by default: "
    "pip install 'contextthreads[migrate]'"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m contextthreads.migrate",
        description=(
            "Rewrite what builds or subclasses threading.Thread, threading.Timer and "
            "concurrent.futures.ThreadPoolExecutor to their contextthreads drop-ins; keep the "
            "stdlib classes wherever they are patched, passed, compared or annotated; leave "
            "everything else byte for byte. Directories are searched for *.py files."
        ),
        epilog=(
            "Exit status: 0 done or nothing to do, 1 --check found files to rewrite, 2 error. "
            "A file that cannot be rewritten safely is left alone and reported on stderr as "
            "PATH:LINE: not rewritten: REASON; it does not change the exit status."
        ),
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
    parser.add_argument(
        "-j",
        "--jobs",
        type=_jobs,
        default=0,
        metavar="N",
        help="files to work on at once, in worker processes (default: one per CPU)",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="Python files or directories")
    return parser


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


class _Task(NamedTuple):
    path: Path
    source: bytes
    first_party: frozenset[str]
    diff: bool


class _Result(NamedTuple):
    after: Optional[bytes] = None  # None: nothing to change
    diff: str = ""
    problems: tuple[tuple[int, str], ...] = ()
    error: str = ""


def _work(task: _Task) -> _Result:
    """Rewrite one file's bytes; runs in a worker process, or in ours."""
    from ._problems import UnsafeRewrite
    from ._source import rewrite_bytes

    try:
        rewritten = rewrite_bytes(task.source, task.first_party)
    except SyntaxError as exc:
        return _Result(error=f"cannot parse: {exc}")
    except UnsafeRewrite as exc:
        return _Result(problems=tuple(exc.problems))
    except Exception as exc:  # a bug of ours must not stop the other files
        return _Result(error=f"cannot rewrite ({type(exc).__name__}: {exc}); please report it")
    if rewritten is None:
        return _Result()
    after, encoding = rewritten
    diff = ""
    if task.diff:
        old = task.source.decode(encoding).splitlines(keepends=True)
        new = after.decode(encoding).splitlines(keepends=True)
        diff = "".join(difflib.unified_diff(old, new, f"{task.path}", f"{task.path}"))
    return _Result(after=after, diff=diff)


class _Progress:
    """A one-line counter on a terminal's stderr, for runs long enough to need one."""

    _DELAY, _EVERY = 0.5, 0.1  # seconds before the first draw, and between draws

    def __init__(self, stream: TextIO, total: int) -> None:
        isatty = getattr(stream, "isatty", None)
        self.stream = stream if isatty is not None and isatty() else None
        self.total = total
        self.start = self.last = time.monotonic()
        self.drawn = False

    def update(self, done: int) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if now - self.start < self._DELAY or (now - self.last < self._EVERY and done < self.total):
            return
        self.last, self.drawn = now, True
        self.stream.write(f"\rmigrate: {done}/{self.total} files")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _results(tasks: list[_Task], jobs: int) -> Iterable[_Result]:
    """Yield each task's result, in the tasks' order."""
    workers = min(jobs, len(tasks) // _FILES_PER_WORKER)
    if workers <= 1:
        yield from map(_work, tasks)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # Largest first, so no worker is left with a big file at the end; the
        # results are still handed back in the tasks' order.
        futures = {}
        for index in sorted(range(len(tasks)), key=lambda i: -len(tasks[i].source)):
            futures[index] = pool.submit(_work, tasks[index])
        for index in range(len(tasks)):
            yield futures[index].result()


def main(
    argv: Optional[Sequence[str]] = None,
    *,
    stdout: Optional[TextIO] = None,
    stderr: Optional[TextIO] = None,
) -> int:
    """Run the migration command on ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Files are rewritten in worker processes (``-j``); everything printed and
    written comes from the calling thread, in the order the files were named
    or found. Reads and writes only those files.
    """
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return exc.code if isinstance(exc.code, int) else ERROR
    try:
        import libcst  # noqa: F401  # fail here, once, rather than in every worker
    except ImportError:
        err.write(f"error: {_NO_LIBCST}\n")
        return ERROR
    from ._project import first_party
    from ._source import mentions_targets

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
    tasks: list[_Task] = []
    for path in files:
        try:
            source = path.read_bytes()
        except OSError as exc:
            err.write(f"error: {path}: cannot read: {exc.strerror or exc}\n")
            status = ERROR
            continue
        if mentions_targets(source):
            tasks.append(_Task(path, source, first_party(path), args.diff))
    progress = _Progress(err, len(files))
    skipped = len(files) - len(tasks)
    changed = 0
    try:
        for done, (task, result) in enumerate(zip(tasks, _results(tasks, args.jobs or _cpus()))):
            progress.update(skipped + done + 1)
            if result.error or result.problems:
                progress.close()
            if result.error:
                err.write(f"error: {task.path}: {result.error}\n")
                status = ERROR
            for line, reason in result.problems:
                err.write(f"{task.path}:{line}: not rewritten: {reason}\n")
            if result.after is None:
                continue
            changed += 1
            if args.check:
                out.write(f"would rewrite {task.path}\n")
            elif args.diff:
                out.write(result.diff)
            else:
                try:
                    _write_atomically(task.path, result.after)
                except OSError as exc:
                    err.write(f"error: {task.path}: cannot write: {exc.strerror or exc}\n")
                    status = ERROR
                    continue
                out.write(f"rewrote {task.path}\n")
    finally:
        progress.close()
    if status == ERROR:
        return ERROR
    if args.check and changed:
        err.write(f"{changed} file{'s' if changed != 1 else ''} would be rewritten\n")
        return WOULD_CHANGE
    return OK
