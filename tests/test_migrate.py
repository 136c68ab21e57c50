"""contextthreads.migrate's rule: what it rewrites, what it keeps, where imports go.

The command line is tested in test_migrate_cli.py; real codebases in
test_migrate_corpus.py and test_migrate_projects.py.
"""

from __future__ import annotations

import contextvars
import textwrap
from pathlib import Path
from typing import Any

import pytest
from realcode import isort_findings

from contextthreads.migrate import UnsafeRewrite, rewrite_source

pytest.importorskip("libcst", reason="contextthreads.migrate needs libcst, which has no wheel here")

#: Top-level names the snippets treat as the project's own (first party).
FIRST_PARTY = frozenset({"myapp"})


def code(text: str) -> str:
    """Return ``text`` dedented, without its first newline."""
    return textwrap.dedent(text).lstrip("\n")


def rewrite(source: str) -> str:
    """Rewrite ``source`` as the command line does for a project whose package is ``myapp``."""
    return rewrite_source(source, first_party=FIRST_PARTY)


# (id, before, after) -- after is None when the file must stay byte-identical.
CASES: list[tuple[str, str, str | None]] = [
    # --- constructions, through every kind of import --------------------------
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
        "module-alias",
        """
        import threading as th

        t = th.Thread(target=print)
        """,
        """
        import contextthreads

        t = contextthreads.Thread(target=print)
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
        from threading import (Lock,  # guards state
        )

        from contextthreads import (
            Thread,
            ThreadPoolExecutor,  # the pool we want to change
        )

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

        Thread(target=print).start()
        Timer(0.1, print).start()
        """,
        """
        from contextthreads import (  # the thread classes
            Thread,
            Timer,  # delayed
        )

        Thread(target=print).start()
        Timer(0.1, print).start()
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

        pool = concurrent.futures.ThreadPoolExecutor(initializer=os.getpid)
        """,
        """
        import os

        import contextthreads

        pool = contextthreads.ThreadPoolExecutor(initializer=os.getpid)
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

        pool = ThreadPoolExecutor()
        """,
        """
        from contextthreads import ThreadPoolExecutor

        pool = ThreadPoolExecutor()
        """,
    ),
    # --- base classes, and calls through the base -------------------------------
    (
        "subclasses-and-explicit-base-calls",
        '''
        import threading
        from threading import Thread


        class Worker(threading.Thread):
            """A threading.Thread that works."""

            def __init__(self) -> None:
                threading.Thread.__init__(self, daemon=True)

            def run(self) -> None:
                threading.Thread.run(self)


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

            def run(self) -> None:
                contextthreads.Thread.run(self)


        class Other(Thread):
            def run(self) -> None:
                super().run()
        ''',
    ),
    (
        "base-call-through-another-name-follows-the-base",
        """
        import threading
        from threading import Thread


        class Worker(Thread):
            def __init__(self):
                threading.Thread.__init__(self, daemon=True)
        """,
        """
        import contextthreads
        from contextthreads import Thread


        class Worker(Thread):
            def __init__(self):
                contextthreads.Thread.__init__(self, daemon=True)
        """,
    ),
    (
        "sentry-timeout-thread",
        '''
        import threading


        class TimeoutThread(threading.Thread):
            """Raises after a while."""

            def __init__(self, waiting_time: float) -> None:
                threading.Thread.__init__(self)
                self.waiting_time = waiting_time


        def spawn(thread: "threading.Thread | None" = None) -> None:
            pass
        ''',
        '''
        import threading

        import contextthreads


        class TimeoutThread(contextthreads.Thread):
            """Raises after a while."""

            def __init__(self, waiting_time: float) -> None:
                contextthreads.Thread.__init__(self)
                self.waiting_time = waiting_time


        def spawn(thread: "threading.Thread | None" = None) -> None:
            pass
        ''',
    ),
    # --- type positions keep the stdlib class ------------------------------------
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
        from typing import Optional, cast

        import contextthreads

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
    # --- what stays byte for byte --------------------------------------------------
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
        "semicolons-partial-from-import",
        """
        from threading import Lock, Thread; Thread(target=print).start()
        """,
        """
        from threading import Lock; from contextthreads import Thread; Thread(target=print).start()
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

        import logging

        import contextthreads

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
        "unused-import-with-a-comment-stays-with-it",
        """
        import os
        import threading  # for the worker

        t = threading.Thread(target=os.getpid)
        """,
        """
        import os
        import threading  # for the worker

        import contextthreads

        t = contextthreads.Thread(target=os.getpid)
        """,
    ),
    (
        "local-import-under-a-module-binding-keeps-its-comment",
        """
        import contextthreads


        def f():
            # local, for speed
            import threading

            return threading.Thread()
        """,
        """
        import contextthreads


        def f():
            # local, for speed
            import threading

            return contextthreads.Thread()
        """,
    ),
    (
        "conditional-import-moves-although-rebound",
        """
        try:
            from threading import Timer
        except ImportError:
            Timer = None

        t = Timer(1.0, print)
        """,
        """
        try:
            from contextthreads import Timer
        except ImportError:
            Timer = None

        t = Timer(1.0, print)
        """,
    ),
    # --- values keep the stdlib class, and their imports -------------------------
    (
        "sentry-monkeypatch-reads-and-writes",
        """
        from concurrent.futures import Future, ThreadPoolExecutor
        from functools import wraps
        from threading import Thread, current_thread


        def setup_once() -> None:
            old_start = Thread.start

            @wraps(old_start)
            def sentry_start(self: "Thread", *a, **kw):
                return old_start(self, *a, **kw)

            Thread.start = sentry_start  # type: ignore
            ThreadPoolExecutor.submit = _wrap(  # type: ignore
                ThreadPoolExecutor.submit
            )


        def _wrap(submit):
            def wrapped(self: "ThreadPoolExecutor", fn, *a, **kw) -> "Future":
                return submit(self, fn, *a, **kw)

            return wrapped
        """,
        None,
    ),
    (
        "otel-classes-as-arguments",
        """
        import threading
        from concurrent import futures

        from wrapt import wrap_function_wrapper

        from opentelemetry.instrumentation.utils import unwrap


        def _instrument():
            wrap_function_wrapper(threading.Thread, "start", _wrap_start)
            wrap_function_wrapper(threading.Timer, "run", _wrap_run)
            wrap_function_wrapper(futures.ThreadPoolExecutor, "submit", _wrap_submit)


        def _uninstrument():
            unwrap(threading.Thread, "start")
            unwrap(threading.Timer, "run")
            unwrap(futures.ThreadPoolExecutor, "submit")


        def _wrap_submit(call_wrapped, instance: futures.ThreadPoolExecutor, args, kwargs):
            return call_wrapped(*args, **kwargs)
        """,
        None,
    ),
    (
        "mock-patch-object-setattr-and-comparisons",
        """
        import threading
        from threading import Thread
        from unittest import mock


        @mock.patch.object(threading.Thread, "start")
        def test_start(start):
            with mock.patch.object(threading.Timer, "run"):
                setattr(Thread, "name", "x")
                assert type(start) is not Thread
                assert getattr(threading.Thread, "run") != threading.Timer.run
        """,
        None,
    ),
    (
        "factories-and-aliases-are-values",
        """
        import threading
        from dataclasses import dataclass, field
        from functools import partial

        Worker = threading.Thread
        make = partial(threading.Timer, 1.0)


        @dataclass
        class Job:
            worker: threading.Thread = field(default_factory=threading.Thread)
        """,
        None,
    ),
    (
        "explicit-base-call-outside-a-subclass-is-a-value",
        """
        import threading


        class Runner:
            def go(self, thread):
                threading.Thread.run(thread)
        """,
        None,
    ),
    (
        "unused-from-import-may-be-a-re-export",
        """
        from threading import Thread, Timer

        __all__ = ["Thread", "Timer"]
        """,
        None,
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
    # --- where the new imports go: isort's and ruff's places ---------------------
    (
        "imports-into-third-party-section-sorted",
        """
        import os
        import threading

        import attr
        import requests
        from attr import define

        t = threading.Thread(target=os.getpid)
        """,
        """
        import os

        import attr
        import contextthreads
        import requests
        from attr import define

        t = contextthreads.Thread(target=os.getpid)
        """,
    ),
    (
        "imports-last-in-third-party-section",
        """
        import threading

        import attr

        t = threading.Thread(target=attr.s)
        """,
        """
        import attr
        import contextthreads

        t = contextthreads.Thread(target=attr.s)
        """,
    ),
    (
        "imports-new-section-before-first-party",
        """
        import os
        import threading

        import myapp
        from myapp import util

        t = threading.Thread(target=util.run, args=(myapp, os))
        """,
        """
        import os

        import contextthreads

        import myapp
        from myapp import util

        t = contextthreads.Thread(target=util.run, args=(myapp, os))
        """,
    ),
    (
        "imports-new-section-first",
        """
        import threading

        import myapp

        t = threading.Thread(target=myapp.run)
        """,
        """
        import contextthreads

        import myapp

        t = contextthreads.Thread(target=myapp.run)
        """,
    ),
    (
        "imports-straight-before-from-imports",
        """
        import threading

        from attr import define
        from zope import interface

        t = threading.Thread(target=define, args=(interface,))
        """,
        """
        import contextthreads
        from attr import define
        from zope import interface

        t = contextthreads.Thread(target=define, args=(interface,))
        """,
    ),
    (
        "imports-from-after-straight-and-merged",
        """
        from concurrent.futures import ThreadPoolExecutor
        from threading import Thread

        import requests

        pool = ThreadPoolExecutor()
        Thread(target=requests.get).start()
        """,
        """
        import requests
        from contextthreads import Thread, ThreadPoolExecutor

        pool = ThreadPoolExecutor()
        Thread(target=requests.get).start()
        """,
    ),
    (
        "imports-merged-into-existing-from-contextthreads",
        """
        from threading import Thread

        from contextthreads import bind

        Thread(target=bind(print)).start()
        """,
        """
        from contextthreads import Thread, bind

        Thread(target=bind(print)).start()
        """,
    ),
    (
        "imports-and-relative-imports",
        """
        import threading

        from . import jobs

        t = threading.Thread(target=jobs.run)
        """,
        """
        import contextthreads

        from . import jobs

        t = contextthreads.Thread(target=jobs.run)
        """,
    ),
]


@pytest.mark.parametrize(("before", "after"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite(before: str, after: str | None) -> None:
    """Each realistic file is rewritten exactly as shown, or left byte-identical."""
    source = code(before)
    expected = source if after is None else code(after)
    assert rewrite(source) == expected


@pytest.mark.parametrize("before", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_rewrite_is_idempotent(before: str) -> None:
    """Rewriting a rewritten file changes nothing."""
    once = rewrite(code(before))
    assert rewrite(once) == once


@pytest.mark.parametrize("before", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_rewritten_code_still_compiles(before: str) -> None:
    """Every rewrite is valid Python."""
    compile(rewrite(code(before)), "<migrated>", "exec")


def test_new_imports_are_where_ruff_and_isort_put_them(tmp_path: Path) -> None:
    """Every case whose input ruff's isort rules accept is still accepted after the rewrite.

    ruff runs with its defaults from a directory holding ``myapp/``, so it
    sees the same first-party package the rewrite is told about.
    """
    before, after = tmp_path / "before", tmp_path / "after"
    for directory in (before, after):
        (directory / "myapp").mkdir(parents=True)
    for name, source, _ in CASES:
        text = code(source)
        (before / f"{name.replace('-', '_')}.py").write_text(text)
        (after / f"{name.replace('-', '_')}.py").write_text(rewrite(text))
    clean = {Path(p.name) for p in before.glob("*.py")} - isort_findings(before)
    assert len(clean) > 20  # most cases are isort-clean to begin with
    assert not clean & isort_findings(after)


def test_line_endings_of_new_imports_follow_the_file() -> None:
    """A CRLF file gets CRLF on the lines the rewrite adds, and its blank lines stay CRLF."""
    source = "import threading\r\n\r\nimport attr\r\n\r\nt = threading.Thread(target=attr.s)\r\n"
    assert rewrite(source) == (
        "import attr\r\nimport contextthreads\r\n\r\nt = contextthreads.Thread(target=attr.s)\r\n"
    )
    merged = "from threading import Thread\r\nfrom concurrent.futures import ThreadPoolExecutor\r\n"
    merged += "Thread(target=ThreadPoolExecutor)\r\nThreadPoolExecutor()\r\n"
    with pytest.raises(UnsafeRewrite):
        rewrite(merged)  # ThreadPoolExecutor is passed as a value and built
    merged = merged.replace("target=ThreadPoolExecutor", "target=print")
    assert rewrite(merged).splitlines(keepends=True)[0] == (
        "from contextthreads import Thread, ThreadPoolExecutor\r\n"
    )


# --- files left alone, and why ---------------------------------------------------

UNSAFE: list[tuple[str, str, list[tuple[int, str]]]] = [
    (
        "patched-and-built",
        """
        from threading import Thread

        _start = Thread.start


        def patched(self):
            return _start(self)


        Thread.start = patched
        Thread(target=print).start()
        """,
        [
            (
                3,
                "threading.Thread is used as a value here (patched, passed, assigned or compared) "
                "and also built or subclassed (line 11)",
            )
        ],
    ),
    (
        "mock-patched-and-built",
        """
        import threading
        from unittest import mock


        def test_start():
            with mock.patch.object(threading.Thread, "start") as start:
                threading.Thread(target=print).start()
            start.assert_called_once()
        """,
        [(6, "threading.Thread is used as a value here"), (6, "(line 7)")],
    ),
    (
        "alias-assigned-and-built",
        """
        import threading

        Worker = threading.Thread
        w = threading.Thread(target=print)
        """,
        [(3, "threading.Thread is used as a value here")],
    ),
    (
        "compared-and-subclassed",
        """
        import threading


        class Worker(threading.Thread):
            pass


        def plain(t):
            return type(t) is threading.Thread
        """,
        [(9, "and also built or subclassed (line 4)")],
    ),
    (
        "module-name-rebound",
        """
        import threading

        if False:
            threading = None

        t = threading.Thread()
        """,
        [(4, "`threading` is bound here as well as by its import (line 1)")],
    ),
    (
        "class-name-rebound-and-used-both-ways",
        """
        from threading import Thread


        def spawn() -> Thread:
            return Thread()


        Thread = object
        """,
        [(8, "`Thread` is bound here as well as by its import (line 1)")],
    ),
    (
        "import-on-its-if-line",
        """
        if True: import threading
        t = threading.Thread()
        """,
        [(1, "an import on one line with its `if`/`try`")],
    ),
]


@pytest.mark.parametrize(
    ("source", "expected"), [c[1:] for c in UNSAFE], ids=[c[0] for c in UNSAFE]
)
def test_unsafe_files_are_refused_with_line_and_reason(
    source: str, expected: list[tuple[int, str]]
) -> None:
    """A file the rule cannot rewrite safely raises UnsafeRewrite naming each line and reason."""
    with pytest.raises(UnsafeRewrite) as caught:
        rewrite(code(source))
    problems = caught.value.problems
    for line, text in expected:
        assert any(p.line == line and text in p.reason for p in problems), problems
    assert list(problems) == sorted(problems)
    assert str(caught.value).startswith(f"line {problems[0].line}: ")


def test_unsafe_report_is_the_same_on_every_run() -> None:
    """The lines named in a report are the first in the file, whatever the scope analysis order."""
    source = code(
        """
        import threading

        a = threading.Thread.start
        b = threading.Thread.run
        for n in range(3):
            threading.Thread(target=print).start()
        c = threading.Thread()
        """
    )
    reports = set()
    for _ in range(5):
        with pytest.raises(UnsafeRewrite) as caught:
            rewrite(source)
        reports.add(str(caught.value))
    assert len(reports) == 1
    report = reports.pop()
    assert report.startswith("line 3: ")
    assert "(line 6)" in report


def test_unparseable_source_raises_syntax_error() -> None:
    """rewrite_source() reports code it has to parse and cannot as a SyntaxError."""
    with pytest.raises(SyntaxError):
        rewrite_source("import threading\n\ndef f(:\n    threading.Thread()\n")


def test_source_that_never_names_the_classes_is_not_parsed() -> None:
    """A file that never says Thread or Timer, or never threading or concurrent, is not parsed."""
    for source in ("def f(:\n", "import threading\ndef f(:\n", "Thread\ndef f(:\n"):
        assert rewrite_source(source) == source


# --- the rewritten code runs, in context ----------------------------------------

PROPAGATION = code(
    """
    import contextvars
    import threading
    from concurrent.futures import ThreadPoolExecutor

    request_id = contextvars.ContextVar("request_id", default="unset")


    class Worker(threading.Thread):
        def __init__(self, seen):
            threading.Thread.__init__(self)
            self.seen = seen

        def run(self):
            self.seen.append(request_id.get())


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
        sub = Worker(seen)
        sub.start()
        sub.join(5)
        return seen
    """
)


def test_migrated_code_propagates_context() -> None:
    """Once migrated, the snippet's thread, pool, timer and subclass see the caller's value."""
    namespace: dict[str, Any] = {}
    exec(compile(rewrite(PROPAGATION), "<migrated>", "exec"), namespace)
    assert contextvars.Context().run(namespace["handle"]) == ["r-42"] * 5


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
    exec(compile(rewrite(source), "<migrated>", "exec"), namespace)
    with namespace["make_pool"]() as pool:
        check_context_isolation(lambda fn: pool.submit(fn).result(timeout=5), max_examples=10)


def test_monkeypatching_code_still_patches_the_stdlib() -> None:
    """Sentry-style patching code, once migrated, still patches threading.Thread itself."""
    import threading

    source = code(
        """
        from threading import Thread

        calls = []


        def setup_once():
            old_start = Thread.start

            def patched(self, *a, **kw):
                calls.append(type(self).__name__)
                return old_start(self, *a, **kw)

            Thread.start = patched
            return old_start
        """
    )
    namespace: dict[str, Any] = {}
    exec(compile(rewrite(source), "<migrated>", "exec"), namespace)
    original = threading.Thread.start
    assert namespace["setup_once"]() is original
    try:
        plain = threading.Thread(target=print, args=("",), kwargs={"end": ""})
        plain.start()
        plain.join(5)
    finally:
        threading.Thread.start = original  # type: ignore[method-assign]
    assert namespace["calls"] == ["Thread"]
