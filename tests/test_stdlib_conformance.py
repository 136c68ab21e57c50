"""CPython's own Thread, Timer and ThreadPoolExecutor tests, run against our classes.

Each suite runs in its own interpreter through ``tests/stdlib_suites.py``, so
the stand-in modules it builds never touch this process. What counts as
failing (a test that fails with ours but passes with the stdlib on this
machine), the expected differences and the excluded tests are documented there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parent / "stdlib_suites.py"
# A suite takes 10 to 20 s on a 2-core machine, most of it the suites' own
# sleeps spread over concurrent workers. The runner stops a hung test after
# 90 s and a hung run after RUNNER_TIMEOUT, before this process gives up.
RUNNER_TIMEOUT = 200
SUITE_TIMEOUT = 450

pytestmark = [pytest.mark.stdlib, pytest.mark.slow]


def _run(suite: str, tmp_path: Path, mode: str) -> tuple[int, str, dict[str, object]]:
    report = tmp_path / f"{suite}.json"
    env = dict(os.environ, CONTEXTTHREADS_STDLIB_MODE=mode)
    proc = subprocess.run(
        [
            sys.executable,
            str(RUNNER),
            suite,
            "--json",
            str(report),
            "--timeout",
            str(RUNNER_TIMEOUT),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUITE_TIMEOUT,
        check=False,
    )
    data = json.loads(report.read_text()) if report.exists() else {}
    return proc.returncode, proc.stdout + proc.stderr, data


@pytest.mark.parametrize("suite", ["threading", "futures"])
def test_cpython_suite_passes_with_our_classes(suite: str, tmp_path: Path) -> None:
    """Each selected CPython test that the stdlib passes here passes with ours, or is listed."""
    code, output, report = _run(suite, tmp_path, "classes")
    if code == 3:
        pytest.skip(output.strip())
    assert code == 0, output
    assert report["status"] == "passed", output
    counts = report["counts"]
    assert isinstance(counts, dict)
    # A selection that silently shrank to nothing would pass vacuously.
    assert counts.get("passed", 0) >= 30, output


BREAK_REPR = """
import contextthreads._thread
contextthreads._thread.ContextThread.__repr__ = lambda self: "<broken>"
"""


def test_runner_reports_a_difference_only_ours_has(tmp_path: Path) -> None:
    """A ContextThread made to differ fails the run, naming the test the stdlib passes."""
    # sitecustomize breaks our class in every worker, the stdlib baseline included.
    (tmp_path / "sitecustomize.py").write_text(BREAK_REPR)
    report = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), CONTEXTTHREADS_STDLIB_MODE="classes")
    selection = ["threading", "-k", "ThreadTests.test_various_ops", "--json", str(report)]
    proc = subprocess.run(
        [sys.executable, str(RUNNER), *selection, "--timeout", str(RUNNER_TIMEOUT)],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUITE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    failures = {entry["id"]: entry for entry in data["fidelity_failures"]}
    assert "test.test_threading.ThreadTests.test_various_ops" in failures, proc.stdout
    entry = failures["test.test_threading.ThreadTests.test_various_ops"]
    assert entry["stdlib"]["outcome"] == "passed"
    assert "<broken>" in entry["ours"]["detail"]
    assert "FIDELITY FAILURE" in proc.stdout


def test_install_mode_fails_when_the_package_cannot_be_imported() -> None:
    """Under install mode, a runner that cannot import contextthreads (here: started without
    site-packages, as a checkout without ``pip install -e .``) crashes with exit status 2 and
    says why; it never reports the suite unavailable (3), which the suites' tests skip on."""
    env = dict(os.environ, CONTEXTTHREADS_STDLIB_MODE="install")
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(RUNNER), "threading", "-k", "test_various_ops"],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUITE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot import contextthreads.install()" in proc.stderr
    assert "pip install -e ." in proc.stderr
