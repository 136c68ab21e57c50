"""Migrated real projects still pass their own test suites, and now carry the context.

Two released projects that start threads and thread pools, fetched from PyPI
by pinned hash into a cache (see realcode.py):

- tqdm 4.70.1: its monitor thread subclasses ``threading.Thread``, and
  ``tqdm.contrib``'s ``MonoWorker`` runs tasks on a ``ThreadPoolExecutor``;
- APScheduler 3.11.3: ``BackgroundScheduler`` runs its loop on a
  ``threading.Thread`` and its jobs on a ``ThreadPoolExecutor``.

Each is migrated whole, tests included (``python -m contextthreads.migrate .``),
and the chosen part of its own suite is run with this interpreter before and
after: every test must end as it did. The parts left out need services or
packages we do not install (databases, tornado, Qt, notebooks) or read a terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest
import realcode
from realcode import migrate

pytest.importorskip("libcst", reason="contextthreads.migrate needs libcst, which has no wheel here")

pytestmark = [pytest.mark.realcode, pytest.mark.slow]


@dataclass(frozen=True)
class Project:
    """A released project, how to run part of its suite, and what the migration must change."""

    sdist: realcode.Sdist
    source: str  # the folder its package is imported from
    tests: tuple[str, ...]  # test files, each run in a pytest process of its own
    rewritten: tuple[str, ...]  # exactly the files the codemod rewrites
    probe: str  # a script printing the value a ContextVar has inside the project's threads


TQDM = Project(
    realcode.TQDM,
    ".",
    (
        "tests/tests_tqdm.py",
        "tests/tests_synchronisation.py",
        "tests/tests_concurrent.py",
        "tests/tests_contrib.py",
        "tests/tests_utils.py",
    ),
    (
        "examples/parallel_bars.py",
        "tests/tests_synchronisation.py",
        "tqdm/_monitor.py",
        "tqdm/contrib/utils_worker.py",
    ),
    """
    import contextvars
    from tqdm.contrib.utils_worker import MonoWorker

    var = contextvars.ContextVar("var", default="unset")
    var.set("set")
    print(MonoWorker().submit(var.get).result(timeout=60))
    """,
)
APSCHEDULER = Project(
    realcode.APSCHEDULER,
    "src",
    ("tests/test_schedulers.py", "tests/test_job.py", "tests/test_util.py"),
    (
        "src/apscheduler/executors/pool.py",
        "src/apscheduler/executors/tornado.py",
        "src/apscheduler/schedulers/background.py",
        "tests/test_schedulers.py",
    ),
    """
    import contextvars, threading
    from apscheduler.schedulers.background import BackgroundScheduler

    var = contextvars.ContextVar("var", default="unset")
    var.set("set")
    seen, ran = [], threading.Event()
    scheduler = BackgroundScheduler()
    scheduler.add_job(lambda: (seen.append(var.get()), ran.set()))
    scheduler.start()
    assert ran.wait(60)
    scheduler.shutdown()
    print(seen[0])
    """,
)
PROJECTS = [TQDM, APSCHEDULER]


def _env(root: Path, project: Project) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root / project.source), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _outcomes(root: Path, project: Project) -> dict[str, str]:
    """Run the project's chosen tests in ``root``; return each test's outcome.

    One process per test file: after tests_tqdm.py in the same process, tqdm's
    own tests_synchronisation.py (and on 3.14 tests_concurrent.py) hang,
    migrated or not.
    """
    outcomes = {}
    for number, test_file in enumerate(project.tests):
        report = root / f"junit-{number}.xml"
        pytest_ = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts="]
        proc = subprocess.run(
            [*pytest_, "-q", f"--junitxml={report}", test_file],
            cwd=root,
            env=_env(root, project),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
        for case in ET.parse(report).iter("testcase"):
            kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
            outcomes[f"{case.get('classname')}::{case.get('name')}"] = (
                kinds[0] if kinds else "passed"
            )
    return outcomes


def _probe(root: Path, project: Project) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(project.probe)],
        cwd=root,
        env=_env(root, project),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("project", PROJECTS, ids=[p.sdist.project for p in PROJECTS])
def test_suite_passes_after_migration_as_before(project: Project, tmp_path: Path) -> None:
    """The migrated project's own tests end as they did before, and its threads and pools,
    which started in an empty context, now run in the caller's."""
    before = realcode.copy_of(project.sdist, tmp_path / "before")
    after = realcode.copy_of(project.sdist, tmp_path / "after")
    proc = migrate(after, ".")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout == "".join(f"rewrote {Path(name)}\n" for name in project.rewritten)

    expected = _outcomes(before, project)
    assert list(expected.values()).count("passed") >= 100
    assert _outcomes(after, project) == expected

    inherits = getattr(sys.flags, "thread_inherit_context", 0)
    assert _probe(before, project) == ("set" if inherits else "unset")
    assert _probe(after, project) == "set"
