"""Actors: an ActorServer hosting named objects, and ActorClient calls and streams to them.

Real sockets on 127.0.0.1, in process.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
import threading
from typing import Any, Iterator, List, Tuple

import pytest

from contextthreads.fluster import (
    ActorClient,
    ActorServer,
    FrameChannel,
    RemoteError,
    RemoteTraceback,
    RpcAuthError,
    RpcConnectionError,
    RpcProtocolError,
    RpcTimeoutError,
)

from .support import SECRET, WAIT, Echo

pytest.importorskip("cloudpickle")

LARGE = 100 * 1024


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
        return self.release.wait(WAIT)

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


# -- streams -----------------------------------------------------------------


def test_stream_round_trips_through_an_actor_method(
    echo_server: tuple[ActorServer, Echo],
) -> None:
    """ActorClient.stream(method) hands the connection to method(channel) on the server:
    frames of every size come back, and hanging up ends the method normally."""
    server, echo = echo_server
    client = ActorClient(server.address, "echoer", secret=SECRET, timeout=WAIT)
    bodies = [b"", b"hello", os.urandom(LARGE), *(bytes([index]) * index for index in range(50))]
    with contextlib.closing(client.stream("echo")) as channel:
        for body in bodies:
            channel.send(body)
            assert channel.recv() == body
    assert echo.ended.get(timeout=WAIT) == "returned"


def test_streams_are_independent(echo_server: tuple[ActorServer, Echo]) -> None:
    """Two streams open at once each get their own method call and their own frames."""
    server, echo = echo_server
    client = ActorClient(server.address, "echoer", secret=SECRET, timeout=WAIT)
    with (
        contextlib.closing(client.stream("echo")) as first,
        contextlib.closing(client.stream("echo")) as second,
    ):
        first.send(b"to first")
        second.send(b"to second")
        assert second.recv() == b"to second"
        assert first.recv() == b"to first"
    assert {echo.ended.get(timeout=WAIT), echo.ended.get(timeout=WAIT)} == {"returned"}


def test_stream_timeout_stays_on_the_channel(echo_server: tuple[ActorServer, Echo]) -> None:
    """The timeout given to stream() bounds the handshake and then each receive on the channel."""
    server, _ = echo_server
    client = ActorClient(server.address, "echoer", secret=SECRET, timeout=WAIT)
    with (
        contextlib.closing(client.stream("echo", timeout=0.5)) as channel,
        pytest.raises(socket.timeout),
    ):
        channel.recv()


def test_stream_with_wrong_secret_is_refused(echo_server: tuple[ActorServer, Echo]) -> None:
    """A stream request signed with another secret gets RpcAuthError; the method never runs."""
    server, echo = echo_server
    client = ActorClient(server.address, "echoer", secret="wrong-secret", timeout=WAIT)
    with pytest.raises(RpcAuthError):
        client.stream("echo")
    assert echo.ended.empty()


@pytest.mark.parametrize(
    ("actor", "method", "detail"),
    [
        ("nobody", "echo", "LookupError"),
        ("echoer", "nope", "AttributeError"),
        ("echoer", "_private", "public"),
    ],
)
def test_stream_to_unknown_or_private_names_is_refused(
    echo_server: tuple[ActorServer, Echo], actor: str, method: str, detail: str
) -> None:
    """Unknown actors, unknown methods and private methods are refused with a 404, reported as
    RpcProtocolError carrying the reason."""
    server, echo = echo_server
    client = ActorClient(server.address, actor, secret=SECRET, timeout=WAIT)
    with pytest.raises(RpcProtocolError, match="404") as info:
        client.stream(method)
    assert detail in str(info.value)
    assert echo.ended.empty()


def test_stream_to_nothing_listening_is_a_refused_connection() -> None:
    """With nothing listening, stream() raises RpcConnectionError caused by
    ConnectionRefusedError (what tells a pool that nothing was delivered)."""
    with socket.socket() as placeholder:
        # Bound but not listening: connections are refused, and nobody else can take the port.
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        client = ActorClient(f"http://127.0.0.1:{port}", "echoer", secret=SECRET, timeout=WAIT)
        with pytest.raises(RpcConnectionError) as info:
            client.stream("echo")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


CREATOR_VAR: contextvars.ContextVar[str] = contextvars.ContextVar(
    "stream_creator_var", default="unset"
)


class Reporter:
    """An actor whose stream method reports what it sees of CREATOR_VAR, then changes it."""

    def report(self, channel: FrameChannel) -> None:
        channel.send(CREATOR_VAR.get().encode())
        CREATOR_VAR.set("changed by a stream")
        channel.send(CREATOR_VAR.get().encode())
        channel.send(type(threading.current_thread()).__name__.encode())
        assert channel.recv() is None


def test_stream_method_runs_in_a_copy_of_the_servers_creation_context() -> None:
    """A method serving a stream sees the context current when the ActorServer was made (not
    later changes), on a ContextThread, in a copy of its own: what one stream sets reaches
    neither the next stream nor the creator."""
    outcomes: List[Tuple[bytes, bytes, bytes]] = []

    def body() -> None:
        CREATOR_VAR.set("from the creator")
        with ActorServer(SECRET) as server:
            server.register("reporter", Reporter())
            CREATOR_VAR.set("set after creation")
            client = ActorClient(server.address, "reporter", secret=SECRET, timeout=WAIT)
            for _ in range(2):
                with contextlib.closing(client.stream("report")) as channel:
                    first, second, thread = channel.recv(), channel.recv(), channel.recv()
                    assert first is not None
                    assert second is not None
                    assert thread is not None
                    outcomes.append((first, second, thread))
        assert CREATOR_VAR.get() == "set after creation"

    contextvars.Context().run(body)
    assert outcomes == [(b"from the creator", b"changed by a stream", b"ContextThread")] * 2
    assert CREATOR_VAR.get() == "unset"
