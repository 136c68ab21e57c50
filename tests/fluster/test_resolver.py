"""Resolvers: fixed ones, and the cluster's, which namespaces by the current FlusterContext."""

from __future__ import annotations

import contextvars
import threading
from typing import Iterator

import pytest

from contextthreads import ContextThread
from contextthreads.fluster import (
    ClusterResolver,
    Controller,
    ControllerClient,
    FixedResolver,
    FlusterContext,
    Resolver,
    ResolveResult,
    fluster_ctx_scope,
)

from .support import PLAIN_THREADS_INHERIT, SECRET, joined


@pytest.fixture(scope="module")
def controller() -> Iterator[Controller]:
    """A controller serving on a free port for the whole module."""
    with Controller(SECRET) as running:
        yield running


def test_fixed_resolver() -> None:
    """FixedResolver returns the configured URLs in order, and nothing for unknown names."""
    resolver = FixedResolver({"a": "http://h:1", "b": ["http://h:2", "http://h:3"]})
    assert isinstance(resolver, Resolver)
    assert resolver.resolve("a").first().url == "http://h:1"
    assert [e.url for e in resolver.resolve("b").endpoints] == ["http://h:2", "http://h:3"]
    missing = resolver.resolve("c")
    assert missing.is_empty
    with pytest.raises(LookupError, match="'c'"):
        missing.first()


def test_cluster_resolver_namespaces_by_current_context(controller: Controller) -> None:
    """The same resolver finds each namespace's own endpoint and never another's."""
    client = ControllerClient(controller.address, SECRET)
    client.register("team-a/db", "http://127.0.0.1:10", "team-a")
    client.register("team-b/db", "http://127.0.0.1:20", "team-b")
    client.register("team-a/db-replica", "http://127.0.0.1:11", "team-a")
    resolver = ClusterResolver(controller.address)
    found: dict[str, ResolveResult] = {}
    for ns in ("team-a", "team-b", "team-c"):
        ctx = FlusterContext(f"{ns}/job", controller.address, SECRET)
        with fluster_ctx_scope(ctx):
            found[ns] = resolver.resolve("db")
    assert [e.url for e in found["team-a"].endpoints] == ["http://127.0.0.1:10"]
    assert [e.url for e in found["team-b"].endpoints] == ["http://127.0.0.1:20"]
    assert found["team-c"].is_empty


def test_cluster_resolver_needs_a_context(controller: Controller) -> None:
    """Without a FlusterContext, resolve() raises RuntimeError pointing at ContextThread."""
    resolver = ClusterResolver(controller.address)
    with pytest.raises(RuntimeError, match="ContextThread"):
        contextvars.Context().run(resolver.resolve, "db")


def test_regression_resolver_on_plain_thread_vs_context_thread(controller: Controller) -> None:
    """The seed bug: a plain Thread has no FlusterContext and the resolver raises; a
    ContextThread carries it and resolves. (Under 3.14's thread_inherit_context=1
    plain threads inherit too, so only the ContextThread half is pinned there.)
    """
    ControllerClient(controller.address, SECRET).register(
        "job-r/_workerpool_x:worker-0", "http://127.0.0.1:30", "job-r/w"
    )
    resolver = ClusterResolver(controller.address)
    outcomes: dict[str, object] = {}

    def resolve_into(key: str) -> None:
        try:
            outcomes[key] = resolver.resolve("_workerpool_x:worker-0").first().url
        except RuntimeError as exc:
            outcomes[key] = exc

    def body() -> None:
        with fluster_ctx_scope(FlusterContext("job-r", controller.address, SECRET)):
            plain = threading.Thread(target=resolve_into, args=("plain",))
            carried = ContextThread(target=resolve_into, args=("context",))
            for thread in (plain, carried):
                thread.start()
                joined(thread)

    contextvars.Context().run(body)
    assert outcomes["context"] == "http://127.0.0.1:30"
    if PLAIN_THREADS_INHERIT:
        assert outcomes["plain"] == "http://127.0.0.1:30"
    else:
        assert isinstance(outcomes["plain"], RuntimeError)
        assert "FlusterContext" in str(outcomes["plain"])
