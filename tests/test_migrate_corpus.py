"""The codemod over Sentry, anyio and OpenTelemetry: it never touches their monkeypatching.

These are the sources issue 21 was found on (sentry-sdk 2.75, anyio 4.16,
opentelemetry-sdk 1.45 and opentelemetry-instrumentation-threading 0.66),
fetched from PyPI by pinned hash into a cache (see realcode.py) and migrated
whole, tests included, as a user would: ``python -m contextthreads.migrate .``.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import warnings
from pathlib import Path

import pytest
import realcode
from realcode import migrate

pytest.importorskip("libcst", reason="contextthreads.migrate needs libcst, which has no wheel here")

pytestmark = [pytest.mark.realcode, pytest.mark.slow]

CORPUS = (realcode.SENTRY, realcode.ANYIO, realcode.OTEL_SDK, realcode.OTEL_THREADING)
SENTRY_PATCHES = Path("sentry_sdk-2.75.0", "sentry_sdk", "integrations", "threading.py")
OTEL_PATCHES = Path(
    "opentelemetry_instrumentation_threading-0.66b1",
    "src",
    "opentelemetry",
    "instrumentation",
    "threading",
    "__init__.py",
)
# The stdlib class used as a value, which must never become ours.
AS_VALUE = re.compile(
    r"contextthreads\.(?:Thread|Timer|ThreadPoolExecutor)"
    r"(?:\s*[,)\]=]|\.\w+\s*=|\.(?:start|run|submit)\b(?!\())"
)


def _digests(root: Path) -> dict[Path, str]:
    return {
        path.relative_to(root): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*.py"))
    }


def _compiles(path: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old code
        try:
            compile(path.read_bytes(), str(path), "exec")
        except SyntaxError:
            return False
    return True


#: Pristine and migrated copies of the corpus, and the migration's output.
Migrated = tuple[Path, Path, subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Migrated:
    """Return pristine and migrated copies of the corpus, and the migration's output."""
    pristine = tmp_path_factory.mktemp("pristine")
    work = tmp_path_factory.mktemp("migrated")
    for sdist in CORPUS:
        realcode.copy_of(sdist, pristine)
        realcode.copy_of(sdist, work)
    proc = migrate(work, "-j", "2", ".")
    assert proc.returncode == 0, proc.stderr
    return pristine, work, proc


def _rewritten(proc: subprocess.CompletedProcess[str]) -> list[Path]:
    return [Path(line[len("rewrote ") :]) for line in proc.stdout.splitlines()]


def test_monkeypatching_modules_are_left_byte_for_byte(migrated: Migrated) -> None:
    """Sentry's and OpenTelemetry's threading integrations (they patch the stdlib) are untouched."""
    pristine, work, _ = migrated
    for path in (SENTRY_PATCHES, OTEL_PATCHES):
        assert (work / path).read_bytes() == (pristine / path).read_bytes()
    # They do patch: otherwise this test would prove nothing.
    assert "Thread.start = sentry_start" in (work / SENTRY_PATCHES).read_text()
    otel = (work / OTEL_PATCHES).read_text()
    assert "wrap_function_wrapper(\n            threading.Thread," in otel
    assert "import threading\n" in otel


def test_no_rewritten_line_patches_or_passes_a_class(migrated: Migrated) -> None:
    """Across every rewritten file, contextthreads' classes are only built, subclassed or
    called through: never assigned to, read for patching, or passed as an argument."""
    _, work, proc = migrated
    changed = _rewritten(proc)
    assert len(changed) >= 30
    for path in changed:
        for line in (work / path).read_text(encoding="utf-8").splitlines():
            if not line.lstrip().startswith("class "):  # a base class is a build
                assert not AS_VALUE.search(line), (path, line)


def test_builds_and_subclasses_are_rewritten(migrated: Migrated) -> None:
    """What starts work is rewritten: Sentry's TimeoutThread and its base call, its worker
    thread, anyio's WorkerThread and OpenTelemetry's batch processors and pools."""
    _, work, proc = migrated
    utils = (work / "sentry_sdk-2.75.0/sentry_sdk/utils.py").read_text()
    assert "class TimeoutThread(contextthreads.Thread):" in utils
    assert "contextthreads.Thread.__init__(self)" in utils
    worker = (work / "sentry_sdk-2.75.0/sentry_sdk/worker.py").read_text()
    assert "self._thread = contextthreads.Thread(" in worker
    anyio = (work / "anyio-4.16.0/src/anyio/_backends/_asyncio.py").read_text()
    assert "from contextthreads import Thread\n" in anyio
    assert "class WorkerThread(Thread):" in anyio
    sdk = work / "opentelemetry_sdk-1.45.2/src/opentelemetry/sdk"
    assert (
        "contextthreads.ThreadPoolExecutor(max_workers=num_threads)"
        in (sdk / "trace/__init__.py").read_text()
    )
    assert (
        "from contextthreads import Thread\n"
        in (sdk / "metrics/_internal/export/__init__.py").read_text()
    )
    assert set(_rewritten(proc)) >= {
        Path("sentry_sdk-2.75.0/sentry_sdk/utils.py"),
        Path("anyio-4.16.0/src/anyio/from_thread.py"),
        Path("opentelemetry_sdk-1.45.2/src/opentelemetry/sdk/_shared_internal/__init__.py"),
    }


def test_patched_and_built_test_module_is_reported_not_rewritten(
    migrated: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    """Sentry's own threading tests patch Thread.start and build threads: left alone, reported."""
    pristine, work, proc = migrated
    path = Path("sentry_sdk-2.75.0/tests/integrations/threading/test_threading.py")
    assert (work / path).read_bytes() == (pristine / path).read_bytes()
    assert f"{path}:13: not rewritten: threading.Thread is used as a value here" in proc.stderr


def test_everything_else_is_byte_for_byte_and_everything_compiles(
    migrated: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    """Only the reported files changed; each rewritten file compiles wherever its original did."""
    pristine, work, proc = migrated
    before, after = _digests(pristine), _digests(work)
    assert before.keys() == after.keys()
    changed = {path for path in before if before[path] != after[path]}
    assert changed == set(_rewritten(proc))
    for path in changed:
        if _compiles(pristine / path):
            assert _compiles(work / path), path


def test_second_run_changes_nothing(
    migrated: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    """Run again over the rewritten files, --check finds nothing to do."""
    _, work, proc = migrated
    again = migrate(work, "--check", *map(str, _rewritten(proc)))
    assert (again.returncode, again.stdout) == (0, ""), again.stderr


def test_imports_stay_sorted(migrated: tuple[Path, Path, subprocess.CompletedProcess[str]]) -> None:
    """No rewritten file that ruff's isort rules accepted is refused afterwards."""
    pristine, work, _ = migrated
    for sdist_root in sorted(p.name for p in work.iterdir()):
        before = realcode.isort_findings(pristine / sdist_root)
        after = realcode.isort_findings(work / sdist_root)
        assert after <= before, sdist_root
