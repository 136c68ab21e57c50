"""FlusterContext, its ContextVar and the scope helper; no processes involved."""

from __future__ import annotations

import contextvars

import pytest

from contextthreads import ContextThread
from contextthreads.fluster import FlusterContext, fluster_ctx, fluster_ctx_scope, get_fluster_ctx
from contextthreads.fluster._context import context_from_env

from .support import SECRET, joined


def make(job_id: str = "job-a") -> FlusterContext:
    return FlusterContext(job_id=job_id, controller_address="http://127.0.0.1:1", secret=SECRET)


def test_namespace_is_root_of_job_id() -> None:
    """The namespace is the first segment of the job id; the parent drops the last one."""
    ctx = make("job-a/worker-0/sub")
    assert ctx.namespace == "job-a"
    assert ctx.parent_job_id == "job-a/worker-0"
    assert make("job-a").namespace == "job-a"
    assert make("job-a").parent_job_id is None
    assert make("job-a").child_job_id("w") == "job-a/w"


def test_secret_never_in_repr() -> None:
    """repr() and str() show the job and controller but never the secret."""
    ctx = make()
    assert SECRET not in repr(ctx)
    assert SECRET not in str(ctx)
    assert "job-a" in repr(ctx)


@pytest.mark.parametrize("job_id", ["", "/a", "a/", "a//b", " a", "a\nb"])
def test_bad_job_ids_rejected(job_id: str) -> None:
    """Empty segments, surrounding whitespace and control characters are refused."""
    with pytest.raises(ValueError, match=r"job_id|segment"):
        make(job_id)


def test_empty_secret_rejected() -> None:
    """A context without a secret could sign nothing: refused."""
    with pytest.raises(ValueError, match="secret"):
        FlusterContext("job-a", "http://127.0.0.1:1", "")


def test_fluster_ctx_raises_without_context() -> None:
    """Outside any scope get_fluster_ctx() is None and fluster_ctx() raises RuntimeError."""

    def outside() -> None:
        assert get_fluster_ctx() is None
        with pytest.raises(RuntimeError, match="no FlusterContext"):
            fluster_ctx()

    contextvars.Context().run(outside)


def test_scope_sets_and_restores() -> None:
    """The scope sets the context, nests, and restores the previous one on exit and on error."""

    def body() -> None:
        a, b = make("job-a"), make("job-b")
        with fluster_ctx_scope(a) as entered:
            assert entered is a
            assert fluster_ctx() is a
            seen = []

            def inner() -> None:
                with fluster_ctx_scope(b):
                    seen.append(fluster_ctx())
                    raise KeyError("x")

            with pytest.raises(KeyError):
                inner()
            assert seen == [b]
            assert fluster_ctx() is a
        assert get_fluster_ctx() is None

    contextvars.Context().run(body)


def test_scope_rejects_non_context() -> None:
    """Passing something else than a FlusterContext is a TypeError."""
    with pytest.raises(TypeError, match="FlusterContext"), fluster_ctx_scope("job-a"):  # type: ignore[arg-type]
        pass


def test_context_thread_carries_it() -> None:
    """A ContextThread started in a scope sees the FlusterContext; its own scope does not leak."""
    seen: list[object] = []

    def child() -> None:
        seen.append(get_fluster_ctx())
        with fluster_ctx_scope(make("job-z")):
            pass

    def body() -> None:
        ctx = make()
        with fluster_ctx_scope(ctx):
            thread = ContextThread(target=child)
            thread.start()
            joined(thread)
            assert seen == [ctx]
            assert fluster_ctx() is ctx

    contextvars.Context().run(body)


def test_env_round_trip() -> None:
    """to_env() and context_from_env() rebuild an equal context, secret included."""
    ctx = make("job-a/w-1")
    rebuilt = context_from_env(ctx.to_env())
    assert rebuilt == ctx
    assert rebuilt.secret == SECRET
    with pytest.raises(RuntimeError, match="FLUSTER_SECRET"):
        context_from_env({"FLUSTER_JOB_ID": "a", "FLUSTER_CONTROLLER_ADDRESS": "http://x:1"})


def test_context_from_env_takes_the_secret_out_of_the_environment() -> None:
    """Reading a worker's context removes the secret from the environment it came from, so
    the job and what it starts cannot see it there; the job id and controller may come from
    arguments instead of their variables."""
    environ = make("job-a/w-2").to_env()
    rebuilt = context_from_env(environ)
    assert rebuilt.secret == SECRET
    assert "FLUSTER_SECRET" not in environ
    assert environ["FLUSTER_JOB_ID"] == "job-a/w-2"
    given = context_from_env(
        {"FLUSTER_SECRET": SECRET}, job_id="job-b/w", controller_address="http://h:2"
    )
    assert (given.job_id, given.controller_address, given.namespace) == (
        "job-b/w",
        "http://h:2",
        "job-b",
    )
    with pytest.raises(RuntimeError, match=r"FLUSTER_JOB_ID, FLUSTER_CONTROLLER_ADDRESS$"):
        context_from_env({"FLUSTER_SECRET": SECRET})
