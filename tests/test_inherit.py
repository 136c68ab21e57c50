"""The session's inheritance flag, and threads_inherit_context(), which tests read."""

from __future__ import annotations

import contextvars
import sys
import threading

import pytest
from bounds import WAIT
from conftest import EXPECT_INHERIT_VAR, expect_inherit

from contextthreads import installed, is_installed
from contextthreads._install import threads_inherit_context

var: contextvars.ContextVar[str] = contextvars.ContextVar("test_inherit_var")


@pytest.mark.skipif(not expect_inherit(), reason=f"{EXPECT_INHERIT_VAR} is not 1")
def test_session_really_runs_with_inheritance_on() -> None:
    """A session that promises thread_inherit_context=1 (the nox tests_inherit session) has it."""
    assert getattr(sys.flags, "thread_inherit_context", None) == 1


def test_threads_inherit_context_follows_the_interpreter_flag() -> None:
    """threads_inherit_context() is the interpreter's flag unless install() is in effect."""
    if is_installed():
        pytest.skip("install() is in effect in this session")
    flag = bool(getattr(sys.flags, "thread_inherit_context", False))
    assert threads_inherit_context() is flag


def plain_thread_sees_starter() -> bool:
    """Start a plain Thread from a context holding a value; return whether the thread saw it."""
    seen: list[str] = []

    def body() -> None:
        var.set("starter")
        thread = threading.Thread(target=lambda: seen.append(var.get("unset")))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive()

    contextvars.Context().run(body)
    return seen == ["starter"]


def test_threads_inherit_context_matches_what_a_plain_thread_does() -> None:
    """threads_inherit_context() tells truly whether a plain Thread sees its starter's values."""
    assert plain_thread_sees_starter() is threads_inherit_context()


def test_threads_inherit_context_is_true_inside_installed() -> None:
    """In an installed() block a plain Thread inherits, and threads_inherit_context() says so."""
    was_installed = is_installed()
    with installed():
        assert threads_inherit_context()
        assert plain_thread_sees_starter()
    assert threads_inherit_context() is (
        was_installed or bool(getattr(sys.flags, "thread_inherit_context", False))
    )
