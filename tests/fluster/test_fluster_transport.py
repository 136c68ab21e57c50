"""The controller, the resolvers and the actor server/client, over real sockets in-process."""

from __future__ import annotations

import contextvars
import http.client
import json
import os
import pickle
import socket
import threading
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextthreads import ContextThread
from contextthreads.fluster import (
    ActorClient,
    ActorServer,
    ClusterResolver,
    Controller,
    ControllerClient,
    FixedResolver,
    FlusterContext,
    RemoteError,
    RemoteTraceback,
    Resolver,
    ResolveResult,
    RpcAuthError,
    RpcConnectionError,
    RpcTimeoutError,
    fluster_ctx_scope,
)
from contextthreads.fluster._wire import SIGNATURE_HEADER, sign, verify

pytest_plugins = ("fluster_fixtures",)

pytest.importorskip("cloudpickle")

SECRET = "transport-test-secret"


@pytest.fixture(scope="module")
def controller() -> Iterator[Controller]:
    """A controller serving on a free port for the whole module."""
    with Controller(SECRET) as running:
        yield running


class Calculator:
    def __init__(self) -> None:
        self.release = threading.Event()

    def add(self, a: int, b: int) -> int:
        return a + b

    def fail(self, message: str) -> None:
        raise KeyError(message)

    def fail_unpicklable(self) -> None:
        error = RuntimeError("holds a lock")
        error.lock = threading.Lock()  # type: ignore[attr-defined]
        raise error

    def unpicklable_result(self) -> Any:
        return threading.Lock()

    def wait_for_release(self) -> bool:
        return self.release.wait(30)

    def _private(self) -> str:
        return "secret"


@pytest.fixture(scope="module")
def actor_server() -> Iterator[tuple[ActorServer, Calculator]]:
    """An ActorServer hosting a Calculator under the name "calc"."""
    calc = Calculator()
    with ActorServer(SECRET) as server:
        server.register("calc", calc)
        yield server, calc
        calc.release.set()


def raw_request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# -- controller -------------------------------------------------------------


def test_controller_reports_the_port_it_bound() -> None:
    """Port 0 picks a free port; address names it and a client reaches it there."""
    with Controller(SECRET) as running:
        assert running.port > 0
        assert running.address == f"http://127.0.0.1:{running.port}"
        ControllerClient(running.address, SECRET).ping()
    with pytest.raises(RpcConnectionError):
        ControllerClient(running.address, SECRET, timeout=5).ping()


def test_controller_register_list_unregister(controller: Controller) -> None:
    """Endpoints are listed by prefix with their metadata and disappear when unregistered."""
    client = ControllerClient(controller.address, SECRET)
    first = client.register("ns-x/svc", "http://127.0.0.1:1", "ns-x", {"pid": "1"})
    second = client.register("ns-x/svc-2", "http://127.0.0.1:2", "ns-x/job")
    client.register("ns-y/svc", "http://127.0.0.1:3", "ns-y")
    listed = client.list_endpoints("ns-x/")
    assert [(e.name, e.address, e.job_id) for e in listed] == [
        ("ns-x/svc", "http://127.0.0.1:1", "ns-x"),
        ("ns-x/svc-2", "http://127.0.0.1:2", "ns-x/job"),
    ]
    assert listed[0].metadata == {"pid": "1"}
    assert client.unregister(first) is True
    assert client.unregister(first) is False
    assert [e.endpoint_id for e in client.list_endpoints("ns-x/")] == [second]
    assert controller.unregister_job("ns-x") == 1
    assert client.list_endpoints("ns-x/") == []


def test_controller_wrong_secret_is_refused(controller: Controller) -> None:
    """A client with another secret gets RpcAuthError and registers nothing."""
    with pytest.raises(RpcAuthError):
        ControllerClient(controller.address, "other-secret").register("ns-q/a", "http://h:1", "q")
    assert controller.list_endpoints("ns-q/") == []


# -- resolvers --------------------------------------------------------------


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
                thread.join(10)
                assert not thread.is_alive()

    contextvars.Context().run(body)
    assert outcomes["context"] == "http://127.0.0.1:30"
    if getattr(__import__("sys").flags, "thread_inherit_context", 0):
        assert outcomes["plain"] == "http://127.0.0.1:30"
    else:
        assert isinstance(outcomes["plain"], RuntimeError)
        assert "FlusterContext" in str(outcomes["plain"])


# -- actor server and client -------------------------------------------------


def test_actor_call_round_trip(actor_server: tuple[ActorServer, Calculator]) -> None:
    """Arguments and results travel; the server reports the port it bound."""
    server, _ = actor_server
    assert server.address == f"http://127.0.0.1:{server.port}"
    client = ActorClient(server.address, "calc", secret=SECRET)
    assert client.call("add", 2, b=3) == 5


def test_actor_user_exception_keeps_type_and_message(
    actor_server: tuple[ActorServer, Calculator],
) -> None:
    """A remote exception is re-raised with its own type and message and a remote traceback."""
    client = ActorClient(actor_server[0].address, "calc", secret=SECRET)
    with pytest.raises(KeyError, match="missing thing") as info:
        client.call("fail", "missing thing")
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "in fail" in info.value.__cause__.text


def test_actor_unpicklable_exception_and_result(
    actor_server: tuple[ActorServer, Calculator],
) -> None:
    """An exception that cannot be pickled arrives as RemoteError; so does a bad result."""
    client = ActorClient(actor_server[0].address, "calc", secret=SECRET)
    with pytest.raises(RemoteError, match="RuntimeError: holds a lock") as info:
        client.call("fail_unpicklable")
    assert info.value.type_name == "RuntimeError"
    with pytest.raises(TypeError, match="cannot be sent"):
        client.call("unpicklable_result")


def test_actor_unknown_names_and_private_methods(
    actor_server: tuple[ActorServer, Calculator],
) -> None:
    """Unknown actors, unknown methods and private methods are refused with clear errors."""
    server = actor_server[0]
    with pytest.raises(LookupError, match="nobody"):
        ActorClient(server.address, "nobody", secret=SECRET).call("add", 1, 2)
    client = ActorClient(server.address, "calc", secret=SECRET)
    with pytest.raises(AttributeError):
        client.call("nope")
    with pytest.raises(AttributeError, match="public"):
        client.call("_private")


def test_actor_client_timeout(actor_server: tuple[ActorServer, Calculator]) -> None:
    """A call that outlives its timeout raises RpcTimeoutError; the server stays usable."""
    server, calc = actor_server
    client = ActorClient(server.address, "calc", secret=SECRET, timeout=0.2)
    with pytest.raises(RpcTimeoutError):
        client.call("wait_for_release")
    calc.release.set()
    assert ActorClient(server.address, "calc", secret=SECRET).call("add", 1, 1) == 2


def test_actor_methods_run_in_server_creators_context() -> None:
    """Calls run on ContextThreads in a copy of the context the server was made in."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("actor_var", default="unset")

    class Reader:
        def read(self) -> str:
            return var.get()

    def body() -> None:
        var.set("from-creator")
        with ActorServer(SECRET) as server:
            server.register("reader", Reader())
            assert ActorClient(server.address, "reader", secret=SECRET).call("read") == (
                "from-creator"
            )

    contextvars.Context().run(body)


# -- signatures -------------------------------------------------------------


class Tripwire:
    """Unpickling this creates a directory: proof that something was unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (self.path,))


@pytest.mark.parametrize("target", ["controller", "actor"])
def test_unsigned_and_garbage_requests_get_401(
    target: str,
    controller: Controller,
    actor_server: tuple[ActorServer, Calculator],
    tmp_path: Path,
) -> None:
    """Every path and method, unsigned or wrongly signed, gets 401 before any unpickling,
    and the server keeps serving signed requests afterwards.
    """
    url = controller.address if target == "controller" else actor_server[0].address
    tripwire = pickle.dumps(Tripwire(str(tmp_path / "unpickled")))
    cases = [
        ("POST", "/call", tripwire, {}),
        ("POST", "/call", tripwire, {SIGNATURE_HEADER: sign("wrong-secret", tripwire)}),
        ("POST", "/register", b'{"op": "register"}', {SIGNATURE_HEADER: "0" * 64}),
        ("POST", "/list", b"\x00\xffgarbage", {SIGNATURE_HEADER: "not-hex-at-all"}),
        ("GET", "/", b"", {}),
        ("PUT", "/anything/at/all?x=1", b"junk", {}),
        ("BREW", "/coffee", b"", {}),
        ("POST", "/call", tripwire, {SIGNATURE_HEADER: sign(SECRET, b"other body")}),
    ]
    for method, path, body, headers in cases:
        status, _ = raw_request(url, method, path, body, headers)
        assert status == 401, (method, path, headers)
    # Not even HTTP: the server answers or hangs up, and lives on.
    parts = urllib.parse.urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
        raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        raw.recv(1024)
    assert not (tmp_path / "unpickled").exists()
    if target == "controller":
        ControllerClient(url, SECRET).ping()
    else:
        assert ActorClient(url, "calc", secret=SECRET).call("add", 4, 5) == 9


def test_reply_signed_with_another_secret_is_rejected(controller: Controller) -> None:
    """A client refuses a reply not signed with its secret, even a 200 one."""
    with Controller("impostor-secret") as impostor:
        body = json.dumps({"op": "ping"}).encode()
        status, _ = raw_request(
            impostor.address,
            "POST",
            "/ping",
            body,
            {SIGNATURE_HEADER: sign("impostor-secret", body)},
        )
        assert status == 200
        with pytest.raises(RpcAuthError):
            ControllerClient(impostor.address, SECRET).ping()


@given(body=st.binary(max_size=256), secret=st.text(min_size=1, max_size=40), flip=st.integers())
def test_signature_accepts_only_the_signed_body(body: bytes, secret: str, flip: int) -> None:
    """A body verifies under the secret that signed it, and fails if one byte changes or
    another secret is used."""
    signature = sign(secret, body)
    assert verify(secret, body, signature)
    assert not verify(secret + "x", body, signature)
    assert not verify(secret, body, None)
    if body:
        index = flip % len(body)
        changed = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        assert not verify(secret, changed, signature)


def test_context_vars_pickle_by_reference() -> None:
    """A ContextVar held by a module comes back as that very variable; one no module holds
    comes back as one process-wide variable of the same name, the same on every load."""
    import fluster_tasks

    from contextthreads.fluster import _pickle

    assert _pickle.loads(_pickle.dumps(fluster_tasks.REQUEST_ID)) is fluster_tasks.REQUEST_ID
    local: contextvars.ContextVar[int] = contextvars.ContextVar("fluster_local_only")
    first = _pickle.loads(_pickle.dumps(local))
    assert isinstance(first, contextvars.ContextVar)
    assert first.name == "fluster_local_only"
    assert _pickle.loads(_pickle.dumps((local, 1)))[0] is first
