"""python -m contextthreads.migrate: modes, exit status, reports, parallel runs, progress."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from realcode import migrate

from contextthreads.migrate import main, rewrite_source
from contextthreads.migrate._cli import _Progress

pytest.importorskip("libcst", reason="contextthreads.migrate needs libcst, which has no wheel here")


NEEDS_WORK = "import threading\n\nthreading.Thread(target=print).start()\n"
CLEAN = "import threading\n\nlock = threading.Lock()\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """Return a small tree: one file to migrate, clean files, and places not to look."""
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "work.py").write_text(NEEDS_WORK)
    (tmp_path / "pkg" / "sub" / "clean.py").write_text(CLEAN)
    (tmp_path / "pkg" / "notes.txt").write_text(NEEDS_WORK)
    (tmp_path / "pkg" / ".hidden").mkdir()
    (tmp_path / "pkg" / ".hidden" / "skip.py").write_text(NEEDS_WORK)
    (tmp_path / "pkg" / "venv").mkdir()
    (tmp_path / "pkg" / "venv" / "pyvenv.cfg").write_text("home = /usr\n")
    (tmp_path / "pkg" / "venv" / "lib.py").write_text(NEEDS_WORK)
    return tmp_path


def test_check_lists_files_and_exits_1(project: Path) -> None:
    """--check names each file that would change, exits 1, and writes nothing."""
    proc = migrate(project, "--check", "pkg")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == f"would rewrite {Path('pkg', 'work.py')}\n"
    assert "1 file would be rewritten" in proc.stderr
    assert (project / "pkg" / "work.py").read_text() == NEEDS_WORK


def test_check_on_clean_files_exits_0(project: Path) -> None:
    """--check exits 0 and prints nothing when nothing would change."""
    proc = migrate(project, "--check", "pkg/sub", "pkg/sub/clean.py")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_diff_prints_unified_diff_and_writes_nothing(project: Path) -> None:
    """--diff prints a unified diff of the change, exits 0, and leaves the file alone."""
    proc = migrate(project, "--diff", "pkg")
    assert proc.returncode == 0, proc.stderr
    work = Path("pkg", "work.py")
    assert proc.stdout == (
        f"--- {work}\n+++ {work}\n@@ -1,3 +1,3 @@\n"
        "-import threading\n+import contextthreads\n \n"
        "-threading.Thread(target=print).start()\n+contextthreads.Thread(target=print).start()\n"
    )
    assert (project / "pkg" / "work.py").read_text() == NEEDS_WORK


def test_default_rewrites_in_place_and_then_checks_clean(project: Path) -> None:
    """Without flags the files are rewritten (mode kept), and --check then finds nothing."""
    work = project / "pkg" / "work.py"
    os.chmod(work, 0o640)
    proc = migrate(project, "pkg")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"rewrote {Path('pkg', 'work.py')}\n"
    assert work.read_text() == rewrite_source(NEEDS_WORK)
    assert work.stat().st_mode & 0o777 == 0o640
    assert (project / "pkg" / "sub" / "clean.py").read_text() == CLEAN
    assert (project / "pkg" / ".hidden" / "skip.py").read_text() == NEEDS_WORK
    assert (project / "pkg" / "venv" / "lib.py").read_text() == NEEDS_WORK
    assert (project / "pkg" / "notes.txt").read_text() == NEEDS_WORK
    assert sorted(p.name for p in (project / "pkg").iterdir()) == sorted(
        [".hidden", "notes.txt", "sub", "venv", "work.py"]
    )
    assert migrate(project, "--check", "pkg").returncode == 0


def test_unparseable_file_exits_2_and_names_it(project: Path) -> None:
    """A file to parse that does not parse is reported, with exit status 2; others proceed."""
    (project / "pkg" / "broken.py").write_text("import threading\ndef f(:\n    Thread()\n")
    proc = migrate(project, "pkg")
    assert proc.returncode == 2
    assert f"error: {Path('pkg', 'broken.py')}: cannot parse" in proc.stderr
    assert (project / "pkg" / "work.py").read_text() == rewrite_source(NEEDS_WORK)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "the following arguments are required: PATH"),
        (("--check", "--diff", "pkg"), "not allowed with argument"),
        (("--frobnicate", "pkg"), "unrecognized arguments"),
        (("-j", "0", "pkg"), "must be a whole number of at least 1"),
        (("--jobs", "two", "pkg"), "must be a whole number of at least 1"),
        (("missing.py",), "error: missing.py: no such file or directory"),
    ],
    ids=["no-paths", "check-and-diff", "unknown-flag", "jobs-zero", "jobs-word", "missing-path"],
)
def test_usage_errors_exit_2(project: Path, args: tuple[str, ...], message: str) -> None:
    """Usage errors exit 2 with a message saying what is wrong, and change nothing."""
    proc = migrate(project, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert (project / "pkg" / "work.py").read_text() == NEEDS_WORK


def test_missing_libcst_is_a_clear_error(project: Path) -> None:
    """Without libcst the command exits 2 and says which extra to install."""
    runner = (
        "import runpy, sys\n"
        "sys.modules['libcst'] = None\n"
        "sys.argv = ['contextthreads.migrate', 'pkg']\n"
        "runpy.run_module('contextthreads.migrate', run_name='__main__', alter_sys=True)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", runner],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2
    assert "needs libcst" in proc.stderr
    assert "pip install 'contextthreads[migrate]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    library = (
        "import sys\n"
        "sys.modules['libcst'] = None\n"
        "from contextthreads.migrate import rewrite_source\n"
        "try:\n    rewrite_source('')\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", library], capture_output=True, text=True, timeout=120, check=True
    )
    assert "contextthreads.migrate needs libcst" in proc.stdout


PATCHED_AND_BUILT = (
    "import threading\n\n"
    "threading.Thread.start = lambda self: None\n"
    "threading.Thread(target=print).start()\n"
)


def test_unsafe_file_is_reported_and_left_alone(project: Path) -> None:
    """A file that cannot be rewritten safely is named with line and reason; the rest proceeds."""
    unsafe = project / "pkg" / "patch.py"
    unsafe.write_text(PATCHED_AND_BUILT)
    proc = migrate(project, "pkg")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"rewrote {Path('pkg', 'work.py')}\n"
    assert proc.stderr == (
        f"{Path('pkg', 'patch.py')}:3: not rewritten: threading.Thread is used as a value here "
        "(patched, passed, assigned or compared) and also built or subclassed (line 4): "
        "rewriting only the builds would split them\n"
    )
    assert unsafe.read_text() == PATCHED_AND_BUILT
    check = migrate(project, "--check", "pkg")
    assert (check.returncode, check.stdout) == (0, "")
    assert "patch.py:3: not rewritten" in check.stderr


def test_first_party_packages_sort_after_contextthreads(tmp_path: Path) -> None:
    """In a project (pyproject.toml, src/ layout) the project's own imports stay after ours."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'myapp'\n")
    package = tmp_path / "src" / "myapp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(
        "import threading\n\nfrom myapp import util\n\nthreading.Thread(target=util).start()\n"
    )
    proc = migrate(tmp_path, str(Path("src", "myapp")))
    assert proc.returncode == 0, proc.stderr
    assert (package / "jobs.py").read_text() == (
        "import contextthreads\n\nfrom myapp import util\n\n"
        "contextthreads.Thread(target=util).start()\n"
    )


@pytest.fixture
def many(tmp_path: Path) -> Path:
    """Return a tree of 48 files: rewritten, clean, unsafe and unparseable ones, interleaved."""
    kinds = [NEEDS_WORK, CLEAN, PATCHED_AND_BUILT, "from threading import Thread\n\nThread(\n"]
    for n in range(48):
        directory = tmp_path / "tree" / f"d{n % 5}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"m{n:02d}.py").write_text(kinds[n % len(kinds)])
    return tmp_path


@pytest.mark.parametrize("mode", ["--check", "--diff"])
def test_parallel_output_matches_serial_output(many: Path, mode: str) -> None:
    """With -j 2 the report, its order and the exit status are those of -j 1, run after run."""
    serial = migrate(many, mode, "-j", "1", "tree")
    assert serial.returncode == 2  # the unparseable files
    assert serial.stdout
    for _ in range(2):
        parallel = migrate(many, mode, "-j", "2", "tree")
        assert (parallel.returncode, parallel.stdout, parallel.stderr) == (
            serial.returncode,
            serial.stdout,
            serial.stderr,
        )
    named = re.findall(r"(tree\S+?\.py):", serial.stderr)
    assert len(named) == 24
    assert named == sorted(named)


def test_parallel_rewrite_writes_what_serial_writes(many: Path) -> None:
    """Rewriting in place with -j 2 leaves every file as rewrite_source() would."""
    before = {p: p.read_text() for p in sorted((many / "tree").rglob("*.py"))}
    proc = migrate(many, "-j", "2", "tree")
    assert proc.returncode == 2
    for path, text in before.items():
        if "Thread(\n" in text or "start = lambda" in text:
            assert path.read_text() == text
        else:
            assert path.read_text() == rewrite_source(text)


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal_only(many: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal stderr shows a files-done counter, erased at the end; elsewhere nothing."""
    monkeypatch.setattr(_Progress, "_DELAY", 0.0)
    monkeypatch.setattr(_Progress, "_EVERY", 0.0)
    monkeypatch.chdir(many)
    terminal, plain = _Terminal(), io.StringIO()
    assert main(["--check", "-j", "1", "tree"], stdout=io.StringIO(), stderr=terminal) == 2
    assert main(["--check", "-j", "1", "tree"], stdout=io.StringIO(), stderr=plain) == 2
    shown = terminal.getvalue()
    assert "\rmigrate: 48/48 files" in shown
    assert shown.endswith("\r\x1b[K")
    # Erased before each message, so the messages read as they do without a terminal.
    assert re.sub(r"\rmigrate: \d+/48 files|\r\x1b\[K", "", shown) == plain.getvalue()
    assert "\r" not in plain.getvalue()


def test_default_jobs_give_the_serial_result(many: Path) -> None:
    """Without -j (one worker per CPU) the report is the one -j 1 gives."""
    default = migrate(many, "--check", "tree")
    serial = migrate(many, "--check", "-j", "1", "tree")
    assert default.returncode == 2
    assert default.stdout.count("would rewrite") == 12
    assert (default.stdout, default.stderr) == (serial.stdout, serial.stderr)


def test_a_failure_in_one_file_is_reported_and_the_others_proceed(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error while rewriting one file names it, exits 2, and spares the others."""
    import contextthreads.migrate._source as source

    real = source.rewrite_bytes

    def failing(data: bytes, first_party: frozenset[str]) -> object:
        if b"fail here" in data:
            raise RuntimeError("boom")
        return real(data, first_party)

    monkeypatch.setattr(source, "rewrite_bytes", failing)
    monkeypatch.chdir(project)
    (project / "pkg" / "odd.py").write_text("# fail here\n" + NEEDS_WORK)
    out, err = io.StringIO(), io.StringIO()
    assert main(["-j", "1", "pkg"], stdout=out, stderr=err) == 2
    assert err.getvalue() == (
        f"error: {Path('pkg', 'odd.py')}: cannot rewrite (RuntimeError: boom); please report it\n"
    )
    assert out.getvalue() == f"rewrote {Path('pkg', 'work.py')}\n"
