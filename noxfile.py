"""The test matrix: every Python a thread library meets.

- CPython 3.9 to 3.15, with thread context inheritance off;
- CPython 3.14 and 3.15 with ``-X thread_inherit_context=1`` (set by environment, so that
  every child interpreter gets it too);
- free-threaded CPython 3.13t with the GIL off, and 3.14t when one is found (none can be
  built here: its session then skips, saying so);
- PyPy 3.9 (libcst does not install there: the codemod's tests skip).

The codemod's tests over released projects (marked realcode) run in the 3.13 session only, the
Slurm tests (marked slurm) in 3.9, 3.15, 3.13t and PyPy's.
The RayLauncher tests, which need Ray (about 240 MB installed, 500 MiB running), run in a
session of their own on one interpreter; the other sessions skip them. The ``docs`` session
builds the documentation site (docs/) offline with warnings as errors.

Interpreters: an environment variable naming one comes first (``CONTEXTTHREADS_PYTHON315=
/path/to/python3.15``, ``CONTEXTTHREADS_PYTHON313T``, ``CONTEXTTHREADS_PYPY39``...), then
``pythonX.Y`` (``pythonX.Yt``, ``pypyX.Y``) on PATH, then ``~/.pyenv/versions``, then the
workplace's ``../shared/tools`` scripts beside this checkout. Each one found gets a stand-in
script in ``.nox/bin``, put first on PATH, where nox looks; a stand-in whose interpreter is
still there is used without running it, so once they are found ``nox -l`` starts none. Under
CI a missing interpreter is an error, except 3.14t.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
BINDIR = ROOT / ".nox" / "bin"
TOOLS = ROOT.parent / "shared" / "tools"
CPYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14", "3.15"]
INHERITING = ["3.14", "3.15"]
FREE_THREADED = ["3.13t", "3.14t"]
PYPYS = ["pypy3.9"]
# Wheels only: the newest hypothesis and libcst have no cp313t or PyPy wheels, and their
# Rust sources need crates.io to build; older releases have wheels that work.
ONLY_BINARY = ("--only-binary", "hypothesis,libcst")

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))
nox.options.sessions = [
    "lint",
    "tests",
    "tests_inherit",
    "tests_free_threaded",
    "tests_pypy",
    "tests_ray",
    "docs",
]


def _runs(path: str | None) -> bool:
    if not path:
        return False
    try:
        subprocess.run([path, "-c", "pass"], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _env_name(name: str) -> str:
    # python3.15 -> CONTEXTTHREADS_PYTHON315, python3.13t -> ..._PYTHON313T, pypy3.9 -> ..._PYPY39
    return "CONTEXTTHREADS_" + name.replace(".", "").upper()


def _search(name: str) -> str | None:
    """Return a working interpreter called ``name``: on PATH, under pyenv, or a shared tool."""
    # pyenv's shims answer for the global version only: its versions are looked up directly.
    on_path = shutil.which(name)
    candidates = [] if on_path is None or "/.pyenv/shims/" in on_path else [on_path]
    if name.startswith("python"):
        version = name.removeprefix("python")
        pattern = os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/{name}")
        candidates += sorted(glob.glob(pattern), reverse=True)
    found = next((c for c in candidates if _runs(c)), None)
    tool = TOOLS / name
    if found is None and tool.exists():
        # The first call assembles the interpreter (about a minute for 3.14 and 3.15).
        where = subprocess.run(
            ["bash", str(tool), "--where"], capture_output=True, text=True, check=False
        )
        found = where.stdout.strip() or None
    return found if _runs(found) else None


def _stand_in(target: str) -> str:
    # A script, not a symlink: a venv made through a symlink takes the link's folder for its
    # home, where a relocated interpreter (the workplace's 3.13t) finds no standard library.
    return f'#!/bin/sh\nexec {shlex.quote(target)} "$@"\n'


def _stood_in(path: Path) -> str | None:
    """Return the interpreter a stand-in made by ``_stand_in`` runs, if it is still there."""
    try:
        target = shlex.split(path.read_text().splitlines()[1])[1]
    except (OSError, IndexError, ValueError):
        return None
    return target if os.access(target, os.X_OK) else None


def _expose_interpreters() -> None:
    BINDIR.mkdir(parents=True, exist_ok=True)
    for name in [f"python{v}" for v in CPYTHONS + FREE_THREADED] + PYPYS:
        stand_in = BINDIR / name
        chosen = os.environ.get(_env_name(name))
        if not chosen and not stand_in.is_symlink() and _stood_in(stand_in):
            continue  # found before, and still there
        found = chosen or _search(name)
        if found:
            stand_in.unlink(missing_ok=True)
            stand_in.write_text(_stand_in(os.path.realpath(found)))
            stand_in.chmod(0o755)
    os.environ["PATH"] = f"{BINDIR}{os.pathsep}{os.environ['PATH']}"


_expose_interpreters()

NO_INHERIT = {"PYTHON_THREAD_INHERIT_CONTEXT": "0"}
INHERIT = {"PYTHON_THREAD_INHERIT_CONTEXT": "1", "CONTEXTTHREADS_EXPECT_INHERIT": "1"}


# Tests that need not run in every session: the codemod's runs over released projects
# (marked realcode: 35 to 50 s, testing libcst's output, not the interpreter) run in one;
# the throwaway Slurm cluster's (marked slurm: about 40 s, where the launcher only runs
# Slurm's commands and reads their output) on the oldest and newest CPython, 3.13t and PyPy.
ONLY_IN = {"realcode": {"3.13"}, "slurm": {"3.9", "3.15", "3.13t", "pypy3.9"}}


def _pytest(
    session: nox.Session,
    *extra: str,
    env: dict[str, str] | None = None,
    install: tuple[str, ...] = (),
) -> None:
    session.install(*install, "-e", ".[test]")
    left_out = [mark for mark, pythons in ONLY_IN.items() if session.python not in pythons]
    select = ("-m", " and ".join(f"not {mark}" for mark in left_out)) if left_out else ()
    session.run("python", "-m", "pytest", *select, *extra, *session.posargs, env=env)


@nox.session(python=CPYTHONS)
def tests(session: nox.Session) -> None:
    """Run the whole suite, CPython's own threading tests included."""
    _pytest(session, env=NO_INHERIT)


@nox.session(python=INHERITING)
def tests_inherit(session: nox.Session) -> None:
    """Run the suite with thread context inheritance on, set by environment so children get it."""
    _pytest(session, env=INHERIT)


# 3.13t ships with the workplace and must be there under CI; no free-threaded 3.14 can be
# built here, so one is used when found and its absence is reported, not failed.
_FOUND_FREE_THREADED = [
    v for v in FREE_THREADED if v == "3.13t" or (BINDIR / f"python{v}").exists()
]


@nox.session(python=_FOUND_FREE_THREADED)
def tests_free_threaded(session: nox.Session) -> None:
    """Run the suite on free-threaded CPython with the GIL off (from 3.14, threads inherit)."""
    session.run("python", "-c", "import sys; assert not sys._is_gil_enabled(), 'GIL is on'")
    # PYTHON_GIL=0: an extension module not marked free-threading-safe must not turn it on.
    inherit = INHERIT if session.python != "3.13t" else {}
    _pytest(session, env={"PYTHON_GIL": "0", **inherit}, install=ONLY_BINARY)


for _version in sorted(set(FREE_THREADED) - set(_FOUND_FREE_THREADED)):
    _name = f"tests_free_threaded-{_version}"
    nox.options.sessions.append(_name)

    @nox.session(name=_name, python=False)
    def _missing_free_threaded(session: nox.Session, version: str = _version) -> None:
        """Say that no free-threaded interpreter of this version was found."""
        session.skip(
            f"no free-threaded CPython {version[:-1]} found (python{version} on PATH, or"
            f" ${_env_name('python' + version)}): none can be built on this machine"
        )


@nox.session(python=PYPYS)
def tests_pypy(session: nox.Session) -> None:
    """Run the suite on PyPy: CPython's suites run too, from PyPy's own test package."""
    _pytest(session, env=NO_INHERIT, install=ONLY_BINARY)


@nox.session(python="3.12")
def tests_ray(session: nox.Session) -> None:
    """Run the RayLauncher tests against a real two-node Ray: one interpreter, for Ray's size."""
    session.install("-e", ".[test,ray]")
    session.run(
        "python",
        "-m",
        "pytest",
        "tests/fluster/test_ray.py",
        *session.posargs,
        env={"CONTEXTTHREADS_EXPECT_RAY": "1"},
    )


@nox.session(python="3.13")
def lint(session: nox.Session) -> None:
    """Check formatting, lint, and mypy --strict for the oldest and newest Python mypy targets."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    # Current mypy targets 3.10 at the oldest; the 3.9 code paths are the 3.10 ones.
    for version in ("3.10", "3.14"):
        session.run("mypy", "--python-version", version)


@nox.session(python="3.14")
def docs(session: nox.Session) -> None:
    """Build the documentation site from scratch; any warning, or a reference left dangling, fails.

    Cross-references (pages, headings, documented names) are the only links checked: nothing is
    fetched from the network. The site's code examples run in tests/test_docs.py.
    """
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-E", "-b", "html", "docs", "docs/_build/html"
    )
