"""OpenTelemetry's own threading tests, with contextthreads.install() in place of instrument().

The test module ships in the sdist of opentelemetry-instrumentation-threading,
not in its wheel: it is fetched once, for the installed version, into a cache
directory (``$XDG_CACHE_HOME`` or ``~/.cache``, under ``contextthreads-tests``),
and run in a fresh interpreter, since it sets OpenTelemetry's global tracer
provider. Without the network the test is skipped, saying so.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip(
    "opentelemetry.instrumentation.threading",
    reason="opentelemetry-instrumentation-threading does not install here",
)
pytest.importorskip(
    "opentelemetry.test.test_base", reason="opentelemetry-test-utils does not install here"
)

from importlib.metadata import version

PACKAGE = "opentelemetry-instrumentation-threading"
TIMEOUT = 300

#: Tests that cannot pass under install(), and why. Each mocks OpenTelemetry's
#: own attach/detach and asserts that its instrumentation called detach():
#: install() propagates the whole contextvars context, OpenTelemetry's
#: included, without calling either.
CANNOT_PASS = {
    "test_threading_with_valid_context_token": "asserts OpenTelemetry's detach() was called",
    "test_threadpool_with_valid_context_token": "asserts OpenTelemetry's detach() was called",
}

#: instrument() and uninstrument() as each appears in the module, and how often.
SUBSTITUTIONS = {
    "ThreadingInstrumentor().instrument()": ("contextthreads.install()", 2),
    "ThreadingInstrumentor().uninstrument()": ("contextthreads.uninstall()", 2),
}


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "contextthreads-tests" / f"{PACKAGE}-{version(PACKAGE)}"


def _fetched_tests() -> Path:
    """Return OpenTelemetry's test_threading.py for the installed version, fetching it once."""
    target = _cache_dir() / "test_threading.py"
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as download:
        proc = subprocess.run(
            # The sdist of this package only: its build backend may come as wheels.
            [
                *(sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE),
                *("--quiet", "--dest", download, f"{PACKAGE}=={version(PACKAGE)}"),
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        sdists = list(Path(download).glob("*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            pytest.skip(f"could not fetch the {PACKAGE} sdist (offline?): {proc.stderr.strip()}")
        with tarfile.open(sdists[0]) as sdist:
            members = sdist.getmembers()
            member = next(m for m in members if m.name.endswith("tests/test_threading.py"))
            source = sdist.extractfile(member)
            assert source is not None
            text = source.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(text)
    partial.replace(target)  # whole or not at all, should two runs race
    return target


def _under_install(source: str) -> str:
    for old, (new, count) in SUBSTITUTIONS.items():
        assert source.count(old) == count, f"{old!r} no longer appears {count} times"
        source = source.replace(old, new)
    future = "from __future__ import annotations\n"
    head, found, rest = source.partition(future)
    return (
        f"{head}{found}import contextthreads\n{rest}"
        if found
        else f"import contextthreads\n{source}"
    )


@pytest.mark.slow
def test_opentelemetry_threading_tests_pass_under_install(tmp_path: Path) -> None:
    """OpenTelemetry's threading tests pass with install() in place of its instrumentor.

    Its spans propagate into threads, timers and pool tasks, nested threads
    keep their parents, and uninstall() stops propagation; only the tests that
    mock OpenTelemetry's own attach/detach (``CANNOT_PASS``) fail, as they must.
    """
    module = tmp_path / "test_otel_threading_under_install.py"
    module.write_text(_under_install(_fetched_tests().read_text()))
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", str(module), "-q", "-p", "no:cacheprovider"),
            *(f"--junitxml={report}", "--rootdir", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=tmp_path,
    )
    assert report.exists(), proc.stdout + proc.stderr
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[case.get("name")] = "failed" if failed else "passed"
    assert len(outcomes) >= 10, proc.stdout
    assert {name for name, outcome in outcomes.items() if outcome == "failed"} == set(
        CANNOT_PASS
    ), proc.stdout
    assert not re.search(r"\berror\b", proc.stdout.splitlines()[-1]), proc.stdout
