"""The test matrix: CPython 3.9 to 3.14, and 3.14 with thread context inheritance on.

The RayLauncher tests, which need Ray (about 240 MB installed, 500 MiB running),
run in a session of their own on one interpreter; the other sessions skip them.

Interpreters are found on PATH as pythonX.Y, then under ~/.pyenv/versions, and
for 3.14 also through $CONTEXTTHREADS_PYTHON314 or the workplace's
../shared/tools/python3.14. Under CI a missing interpreter is an error.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"]

nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = bool(os.environ.get("CI"))
nox.options.sessions = ["lint", "tests", "tests_inherit", "tests_ray"]


def _runs(path: str | None) -> bool:
    if not path:
        return False
    try:
        subprocess.run([path, "-c", "pass"], check=True, capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _find_interpreter(version: str) -> str | None:
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(
        glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")),
        reverse=True,
    )
    if version == "3.14":
        candidates.append(os.environ.get("CONTEXTTHREADS_PYTHON314"))
        tool = ROOT.parent / "shared" / "tools" / "python3.14"
        if tool.exists():
            where = subprocess.run(
                ["bash", str(tool), "--where"], capture_output=True, text=True, check=False
            )
            candidates.append(where.stdout.strip() or None)
    return next((c for c in candidates if _runs(c)), None)


def _expose_interpreters() -> None:
    # nox looks interpreters up by name on PATH; pyenv shims answer for only
    # the global version, so put a link for every version we can find first.
    bindir = ROOT / ".nox" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for version in PYTHONS:
        link = bindir / f"python{version}"
        if link.is_symlink() and _runs(str(link)):
            continue
        found = _find_interpreter(version)
        if found and os.path.realpath(found) != str(link):
            link.unlink(missing_ok=True)
            link.symlink_to(found)
    os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"


_expose_interpreters()


def _pytest(session: nox.Session, *extra: str, env: dict[str, str] | None = None) -> None:
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *extra, *session.posargs, env=env)


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the whole suite, CPython's own threading tests included."""
    _pytest(session, env={"PYTHON_THREAD_INHERIT_CONTEXT": "0"})


@nox.session(python="3.14")
def tests_inherit(session: nox.Session) -> None:
    """Run the suite with thread context inheritance on, set by environment so children get it."""
    _pytest(
        session, env={"PYTHON_THREAD_INHERIT_CONTEXT": "1", "CONTEXTTHREADS_EXPECT_INHERIT": "1"}
    )


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
