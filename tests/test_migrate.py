"""python -m contextthreads.migrate: what it rewrites, what it leaves byte for byte, its CLI."""

from __future__ import annotations

import contextvars
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from contextthreads.migrate import rewrite_source

pytest.importorskip("libcst")


def code(text: str) -> str:
    """Return ``text`` dedented, without its first newline."""
    return textwrap.dedent(text).lstrip("\n")


def migrate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m contextthreads.migrate ARGS`` in ``tmp_path``."""
    return subprocess.run(
        [sys.executable, "-m", "contextthreads.migrate", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# (id, before, after) -- after is None when the file must stay byte-identical.
CASES: list[tuple[str, str, str | None]] = [
    (
        "module-attribute",
        """
        import threading

        t = threading.Thread(target=print)
        """,
        """
        import contextthreads

        t = contextthreads.Thread(target=print)
        """,
    ),
    (
        "module-attribute-other-names-stay",
        """
        import threading  # we need locks too

        lock = threading.Lock()
        t = threading.Timer(1.0, print)
        """,
        """
        import threading  # we need locks too
        import contextthreads

        lock = threading.Lock()
        t = contextthreads.Timer(1.0, print)
        """,
    ),
    (
        "from-import",
        """
        from threading import Thread

        Thread(target=print).start()
        """,
        """
        from contextthreads import Thread

        Thread(target=print).start()
        """,
    ),
    (
        "from-import-alias",
        """
        from threading import Thread as T, Timer as Delay

        T(target=print).start()
        Delay(0.1, print).start()
        """,
        """
        from contextthreads import Thread as T, Timer as Delay

        T(target=print).start()
        Delay(0.1, print).start()
        """,
    ),
    (
        "from-import-list-other-names",
        """
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor() as pool:
            for f in as_completed([pool.submit(print)]):
                f.result()
        """,
        """
        from concurrent.futures import as_completed
        from contextthreads import ThreadPoolExecutor

        with ThreadPoolExecutor() as pool:
            for f in as_completed([pool.submit(print)]):
                f.result()
        """,
    ),
    (
        "from-import-parenthesized-with-comments",
        """
        from concurrent.futures import (
            Future,  # results
            ThreadPoolExecutor,  # the pool we want to change
            as_completed,
        )
        from threading import (Lock,  # guards state
                               Thread)

        pool = ThreadPoolExecutor(4)
        worker = Thread(target=print)
        """,
        """
        from concurrent.futures import (
            Future,  # results
            as_completed,
        )
        from contextthreads import (
            ThreadPoolExecutor,  # the pool we want to change
        )
        from threading import (Lock,  # guards state
        )
        from contextthreads import (Thread)

        pool = ThreadPoolExecutor(4)
        worker = Thread(target=print)
        """,
    ),
    (
        "from-import-parenthesized-only-targets",
        """
        from threading import (  # the thread classes
            Thread,
            Timer,  # delayed
        )
        """,
        """
        from contextthreads import (  # the thread classes
            Thread,
            Timer,  # delayed
        )
        """,
    ),
    (
        "import-as",
        """
        import concurrent.futures as cf

        pool = cf.ThreadPoolExecutor(max_workers=2)
        done = cf.wait([pool.submit(print)])
        """,
        """
        import concurrent.futures as cf
        import contextthreads

        pool = contextthreads.ThreadPoolExecutor(max_workers=2)
        done = cf.wait([pool.submit(print)])
        """,
    ),
    (
        "dotted-import-unused-after",
        """
        import os
        import concurrent.futures

        pool = concurrent.futures.ThreadPoolExecutor()
        """,
        """
        import os
        import contextthreads

        pool = contextthreads.ThreadPoolExecutor()
        """,
    ),
    (
        "from-package-import-module",
        """
        from concurrent import futures

        pool = futures.ThreadPoolExecutor()
        """,
        """
        import contextthreads

        pool = contextthreads.ThreadPoolExecutor()
        """,
    ),
    (
        "private-submodule",
        """
        from concurrent.futures.thread import ThreadPoolExecutor
        """,
        """
        from contextthreads import ThreadPoolExecutor
        """,
    ),
    (
        "subclasses",
        '''
        import threading
        from threading import Thread


        class Worker(threading.Thread):
            """A threading.Thread that works."""

            def __init__(self) -> None:
                threading.Thread.__init__(self, daemon=True)


        class Other(Thread):
            def run(self) -> None:
                super().run()
        ''',
        '''
        import contextthreads
        from contextthreads import Thread


        class Worker(contextthreads.Thread):
            """A threading.Thread that works."""

            def __init__(self) -> None:
                contextthreads.Thread.__init__(self, daemon=True)


        class Other(Thread):
            def run(self) -> None:
                super().run()
        ''',
    ),
    (
        "annotations-and-isinstance-keep-stdlib",
        """
        from __future__ import annotations

        import threading
        from typing import Optional, cast

        Maybe = Optional[threading.Thread]


        def start(t: threading.Thread) -> threading.Thread:
            assert isinstance(t, threading.Thread)
            assert issubclass(type(t), (threading.Thread, threading.Timer))
            t2 = cast(threading.Thread, t)
            spare: threading.Thread = threading.Thread(target=print)
            return spare
        """,
        """
        from __future__ import annotations

        import threading
        import contextthreads
        from typing import Optional, cast

        Maybe = Optional[threading.Thread]


        def start(t: threading.Thread) -> threading.Thread:
            assert isinstance(t, threading.Thread)
            assert issubclass(type(t), (threading.Thread, threading.Timer))
            t2 = cast(threading.Thread, t)
            spare: threading.Thread = contextthreads.Thread(target=print)
            return spare
        """,
    ),
    (
        "from-import-used-in-annotation-and-call",
        """
        from threading import Thread


        def spawn(fn) -> Thread:
            return Thread(target=fn)
        """,
        """
        from threading import Thread
        import contextthreads


        def spawn(fn) -> Thread:
            return contextthreads.Thread(target=fn)
        """,
    ),
    (
        "comments-and-strings-untouched",
        '''
        import threading  # threading.Thread lives here


        def f():
            """Start a threading.Thread; see Thread(target=...)."""
            # threading.Thread(target=f) would lose the context
            name = "threading.Thread"
            text = f"{name} vs threading.Timer"
            return threading.Thread(  # keep this comment
                target=f,  # and this one
            )
        ''',
        '''
        import contextthreads  # threading.Thread lives here


        def f():
            """Start a threading.Thread; see Thread(target=...)."""
            # threading.Thread(target=f) would lose the context
            name = "threading.Thread"
            text = f"{name} vs threading.Timer"
            return contextthreads.Thread(  # keep this comment
                target=f,  # and this one
            )
        ''',
    ),
    (
        "function-local-import",
        """
        def run():
            import threading

            return threading.Thread(target=print)
        """,
        """
        def run():
            import contextthreads

            return contextthreads.Thread(target=print)
        """,
    ),
    (
        "semicolons",
        """
        import threading; t = threading.Thread(target=print); t.start()
        """,
        """
        import contextthreads; t = contextthreads.Thread(target=print); t.start()
        """,
    ),
    (
        "existing-contextthreads-import",
        """
        import contextthreads
        import threading

        a = contextthreads.bind(print)
        b = threading.Thread(target=a)
        """,
        """
        import contextthreads

        a = contextthreads.bind(print)
        b = contextthreads.Thread(target=a)
        """,
    ),
    (
        "docstring-and-future-import-stay-first",
        '''
        """Module docstring mentioning threading.Thread."""

        from __future__ import annotations

        import threading
        import logging

        log = logging.getLogger(__name__)
        t = threading.Thread(target=log.info, args=("hi",))
        ''',
        '''
        """Module docstring mentioning threading.Thread."""

        from __future__ import annotations

        import contextthreads
        import logging

        log = logging.getLogger(__name__)
        t = contextthreads.Thread(target=log.info, args=("hi",))
        ''',
    ),
    (
        "import-list-and-local-imports",
        """
        import os, threading


        def run():
            import threading

            return threading.Thread(target=print)


        timer = threading.Timer(1.0, os.getpid)
        """,
        """
        import os
        import contextthreads


        def run():

            return contextthreads.Thread(target=print)


        timer = contextthreads.Timer(1.0, os.getpid)
        """,
    ),
    (
        "conditional-import-and-default-factory",
        """
        import threading
        from dataclasses import dataclass, field

        try:
            from threading import Timer
        except ImportError:
            Timer = None


        @dataclass
        class Job:
            worker: threading.Thread = field(default_factory=threading.Thread)
            delay: "threading.Timer | None" = None
        """,
        """
        import threading
        import contextthreads
        from dataclasses import dataclass, field

        try:
            from contextthreads import Timer
        except ImportError:
            Timer = None


        @dataclass
        class Job:
            worker: threading.Thread = field(default_factory=contextthreads.Thread)
            delay: "threading.Timer | None" = None
        """,
    ),
    (
        "nothing-to-do-locks",
        "import threading\n\nlock = threading.Lock()\nev = threading.Event()\n",
        None,
    ),
    (
        "nothing-to-do-shadowed-names",
        """
        from threading import Lock


        def f(threading):
            return threading.Thread()


        def g():
            Thread = list
            return Thread()


        class Thread:
            pass


        ThreadPoolExecutor = dict
        x = ThreadPoolExecutor()
        """,
        None,
    ),
    (
        "nothing-to-do-type-checking-only",
        """
        from __future__ import annotations

        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from threading import Thread


        def join_all(threads: list[Thread]) -> None:
            for t in threads:
                t.join()
        """,
        None,
    ),
    (
        "nothing-to-do-star-import",
        "from threading import *  # noqa: F403\n\nThread(target=print)\n",
        None,
    ),
    (
        "nothing-to-do-process-pool-and-strings",
        """
        from concurrent.futures import ProcessPoolExecutor

        HELP = "use threading.Thread or ThreadPoolExecutor"  # not code
        pool = ProcessPoolExecutor()
        """,
        None,
    ),
]


@pytest.mark.parametrize(("before", "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite(before: str, after: str | None) -> None:
    """Each realistic file is rewritten exactly as shown, or left byte-identical."""
    source = code(before)
    expected = source if after is None else code(after)
    assert rewrite_source(source) == expected


@pytest.mark.parametrize("before", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite_is_idempotent(before: str) -> None:
    """Rewriting a rewritten file changes nothing."""
    once = rewrite_source(code(before))
    assert rewrite_source(once) == once


@pytest.mark.parametrize("before", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_rewritten_code_still_compiles(before: str) -> None:
    """Every rewrite is valid Python."""
    compile(rewrite_source(code(before)), "<migrated>", "exec")


def test_unparseable_source_raises_syntax_error() -> None:
    """rewrite_source() reports code it cannot parse as a SyntaxError."""
    with pytest.raises(SyntaxError):
        rewrite_source("def f(:\n")


PROPAGATION = code(
    """
    import contextvars
    import threading
    from concurrent.futures import ThreadPoolExecutor

    request_id = contextvars.ContextVar("request_id", default="unset")


    def handle():
        request_id.set("r-42")
        seen = []
        worker = threading.Thread(target=lambda: seen.append(request_id.get()))
        worker.start()
        worker.join(5)
        with ThreadPoolExecutor(2) as pool:
            seen.append(pool.submit(request_id.get).result(timeout=5))
            seen.extend(pool.map(lambda _: request_id.get(), [1], timeout=5))
        timer = threading.Timer(0, lambda: seen.append(request_id.get()))
        timer.start()
        timer.join(5)
        return seen
    """
)


def test_migrated_code_propagates_context() -> None:
    """Executed after migration, the snippet's thread, pool and timer see the caller's value."""
    namespace: dict[str, Any] = {}
    exec(compile(rewrite_source(PROPAGATION), "<migrated>", "exec"), namespace)
    assert contextvars.Context().run(namespace["handle"]) == ["r-42"] * 4


def test_migrated_pool_passes_the_isolation_checker() -> None:
    """The pool class a migrated module builds passes contextthreads.testing's checker."""
    from contextthreads.testing import check_context_isolation

    namespace: dict[str, Any] = {}
    source = code(
        """
        import concurrent.futures as cf

        def make_pool():
            return cf.ThreadPoolExecutor(2)
        """
    )
    exec(compile(rewrite_source(source), "<migrated>", "exec"), namespace)
    with namespace["make_pool"]() as pool:
        check_context_isolation(lambda fn: pool.submit(fn).result(timeout=5), max_examples=10)


def test_encoding_and_line_endings_are_kept(tmp_path: Path) -> None:
    """A latin-1 file with CRLF endings keeps both, and its non-ASCII text, byte for byte."""
    before = (
        "# -*- coding: latin-1 -*-\r\n"
        "import threading\r\n"
        "NAME = 'café'\r\n"
        "t = threading.Thread(target=print)\r\n"
    ).encode("latin-1")
    path = tmp_path / "legacy.py"
    path.write_bytes(before)
    proc = migrate(tmp_path, "legacy.py")
    assert proc.returncode == 0, proc.stderr
    assert path.read_bytes() == (
        "# -*- coding: latin-1 -*-\r\n"
        "import contextthreads\r\n"
        "NAME = 'café'\r\n"
        "t = contextthreads.Thread(target=print)\r\n"
    ).encode("latin-1")


# --- the command line --------------------------------------------------------

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
    """A file that does not parse is reported with its name and exit status 2; others proceed."""
    (project / "pkg" / "broken.py").write_text("def f(:\n")
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
        (("missing.py",), "error: missing.py: no such file or directory"),
    ],
    ids=["no-paths", "check-and-diff", "unknown-flag", "missing-path"],
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
