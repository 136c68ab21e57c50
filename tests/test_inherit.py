"""The session's inheritance flag, and what the package reads from it."""

from __future__ import annotations

import contextvars
import sys
import threading

import pytest
from conftest import EXPECT_INHERIT_VAR, expect_inherit

from contextthreads import _inherit

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_inherit_var")


@pytest.mark.skipif(not expect_inherit(), reason=f"{EXPECT_INHERIT_VAR} is not 1")
def test_session_really_runs_with_inheritance_on() -> None:
    """A session that promises thread_inherit_context=1 (the nox tests_inherit session) has it."""
    assert sys.flags.thread_inherit_context == 1  # type: ignore[attr-defined]


def test_threads_inherit_context_follows_the_interpreter_flag() -> None:
    """threads_inherit_context() is the interpreter's flag unless install() patched threading."""
    if _inherit.patched:
        pytest.skip("threading is patched by install() in this session")
    flag = bool(getattr(sys.flags, "thread_inherit_context", False))
    assert _inherit.threads_inherit_context() is flag


def test_threads_inherit_context_matches_what_a_plain_thread_does() -> None:
    """threads_inherit_context() tells truly whether a plain Thread sees its starter's values."""
    seen: list[str] = []

    def body() -> None:
        var.set("starter")
        thread = threading.Thread(target=lambda: seen.append(var.get("unset")))
        thread.start()
        thread.join(5)
        assert not thread.is_alive()

    contextvars.Context().run(body)
    assert seen == (["starter"] if _inherit.threads_inherit_context() else ["unset"])
