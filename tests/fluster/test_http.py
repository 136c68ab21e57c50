"""Signed HTTP on the server: nothing unsigned, forged, misdirected, stale or replayed is served.

Every server (the controller, actor servers) is a ``SignedServer``; its
handler also writes the server half of the stream handshake. Requests are
written byte for byte on real sockets, as an attacker who saw some would.
"""

from __future__ import annotations

import contextlib
import email.message
import http.client
import json
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextthreads.fluster import (
    ActorClient,
    ActorServer,
    Controller,
    ControllerClient,
    RpcProtocolError,
    _pickle,
)
from contextthreads.fluster._http import MAX_HEAD, MAX_PENDING, SignedServer
from contextthreads.fluster._stream import accept_signature
from contextthreads.fluster._wire import (
    NONCE_HEADER,
    NONCE_SIZE,
    SIGNATURE_HEADER,
    sign,
    signed_request_headers,
    split_address,
    verify_reply,
)
from contextthreads.fluster._wire import STREAM_PROTOCOL as PROTOCOL

from .support import SECRET, WAIT, Echo, LogWatcher, Tripwire, frame

pytest.importorskip("cloudpickle")

STREAM_PATH = "/stream"


class Account:
    """An actor whose method must not run twice for one request."""

    def __init__(self) -> None:
        self.balance = 0

    def deposit(self, amount: int) -> int:
        self.balance += amount
        return self.balance

    def add(self, a: int, b: int) -> int:
        return a + b


@pytest.fixture(scope="module")
def controller() -> Iterator[Controller]:
    """A controller serving on a free port for the whole module."""
    with Controller(SECRET) as running:
        yield running


@pytest.fixture
def account_server() -> Iterator[tuple[ActorServer, Account]]:
    """An ActorServer hosting a fresh Account under the name "bank"."""
    account = Account()
    with ActorServer(SECRET) as server:
        server.register("bank", account)
        yield server, account


def signed(
    url: str,
    path: str,
    body: bytes,
    *,
    method: str = "POST",
    upgrade: str = "",
    now: float | None = None,
    secret: str = SECRET,
) -> tuple[bytes, bytes]:
    """Return the bytes of a request to ``url`` signed for it, as a client writes them, and
    the request's nonce."""
    host = split_address(url).netloc
    headers, nonce = signed_request_headers(secret, method, path, host, body, upgrade, now=now)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + body, nonce


def connect_to(url: str) -> socket.socket:
    """Open a raw connection to ``url``'s server."""
    address = split_address(url)
    return socket.create_connection((address.host, address.port), timeout=WAIT)


def send_raw(url: str, data: bytes) -> tuple[int, email.message.Message, bytes]:
    """Write ``data`` on a new connection to ``url``; return the answer's status, headers and
    body (no body for a 101)."""
    with connect_to(url) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            body = b"" if response.status == 101 else response.read()
            return response.status, response.msg, body
        finally:
            # Its file keeps the connection open until closed, and PyPy frees it late.
            response.close()


def call_body(method: str, *args: Any) -> bytes:
    """Return the body of an ActorClient call of the "bank" actor's ``method``."""
    return _pickle.dumps(("bank", method, args, {}))


# -- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["controller", "actor"])
def test_unsigned_and_garbage_requests_get_401(
    target: str,
    controller: Controller,
    account_server: tuple[ActorServer, Account],
    tmp_path: Path,
) -> None:
    """Every path and method, unsigned, wrongly signed, or signed the old way (the body
    only), gets 401 before any unpickling, and the server keeps serving signed requests."""
    url = controller.address if target == "controller" else account_server[0].address
    tripwire = pickle.dumps(Tripwire(str(tmp_path / "unpickled")))
    signed_by_other, _ = signed(url, "/call", tripwire, secret="wrong-secret")
    cases = [
        b"POST /call HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(tripwire) + tripwire,
        signed_by_other,
        b"POST /call HTTP/1.1\r\n%s: %s\r\n\r\n"
        % (SIGNATURE_HEADER.encode(), sign(SECRET, tripwire).encode()),
        b"GET / HTTP/1.0\r\n\r\n",
        b"PUT /anything/at/all?x=1 HTTP/1.1\r\nContent-Length: 4\r\n\r\njunk",
        b"BREW /coffee HTTP/1.1\r\n\r\n",
    ]
    for data in cases:
        status, _, _ = send_raw(url, data)
        assert status == 401, data[:60]
    # Not even HTTP: the server answers or hangs up, and lives on.
    with connect_to(url) as raw:
        raw.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        raw.recv(1024)
    assert not (tmp_path / "unpickled").exists()
    if target == "controller":
        ControllerClient(url, SECRET).ping()
    else:
        assert ActorClient(url, "bank", secret=SECRET).call("add", 4, 5) == 9


def test_a_request_is_good_once_and_only_for_its_server(controller: Controller) -> None:
    """A captured controller request does its work once: sent again it is a replay (401),
    sent to another server holding the same secret it is misdirected (401); a replayed
    register resurrects nothing."""
    body = json.dumps(
        {"op": "register", "name": "ns-r/svc", "address": "http://h:1", "job_id": "ns-r"}
    ).encode()
    captured, nonce = signed(controller.address, "/register", body)
    status, headers, reply = send_raw(controller.address, captured)
    assert status == 200
    assert verify_reply(SECRET, nonce, 200, reply, headers[SIGNATURE_HEADER])
    [endpoint] = controller.list_endpoints("ns-r/")
    assert controller.unregister(endpoint.endpoint_id)
    status, _, reason = send_raw(controller.address, captured)
    assert (status, reason) == (401, b"replayed request\n")
    with Controller(SECRET) as other:
        status, _, reason = send_raw(other.address, captured)
        assert (status, reason) == (401, b"meant for another server\n")
        assert other.list_endpoints("") == []
    assert controller.list_endpoints("ns-r/") == []


def test_an_actor_call_runs_once_however_often_it_is_sent(
    account_server: tuple[ActorServer, Account],
) -> None:
    """A captured deposit is deposited once: its replays, on the same server or on another
    that shares the secret and hosts the same actor, are refused before the method runs."""
    server, account = account_server
    captured, _ = signed(server.address, "/call", call_body("deposit", 100))
    assert send_raw(server.address, captured)[0] == 200
    for _ in range(3):
        assert send_raw(server.address, captured)[0] == 401
    twin = Account()
    with ActorServer(SECRET) as other:
        other.register("bank", twin)
        assert send_raw(other.address, captured)[0] == 401
    assert (account.balance, twin.balance) == (100, 0)


@pytest.mark.parametrize("skew", [-61.0, 61.0])
def test_requests_signed_too_long_ago_or_ahead_are_refused(
    account_server: tuple[ActorServer, Account], skew: float
) -> None:
    """A request whose signed timestamp is more than a minute off the server's clock, either
    way, is refused (401) without running."""
    server, account = account_server
    captured, _ = signed(server.address, "/call", call_body("deposit", 1), now=time.time() + skew)
    status, _, reason = send_raw(server.address, captured)
    assert (status, reason) == (401, b"timestamp outside the server's clock window\n")
    assert account.balance == 0


def test_a_body_must_match_its_signed_digest(
    account_server: tuple[ActorServer, Account], tmp_path: Path
) -> None:
    """A signed head with another body of the same length gets 400, and nothing of it is
    unpickled."""
    server, _ = account_server
    body = call_body("add", 1, 2)
    captured, _ = signed(server.address, "/call", body)
    tripwire = pickle.dumps(Tripwire(str(tmp_path / "unpickled")))
    forged = captured[: -len(body)] + tripwire[: len(body)].ljust(len(body), b".")
    status, _, reason = send_raw(server.address, forged)
    assert (status, reason) == (400, b"the body does not match its signed digest\n")
    assert not (tmp_path / "unpickled").exists()


def test_a_head_is_judged_before_any_body_is_read(controller: Controller) -> None:
    """A head announcing a 100 MiB body with a made-up signature is refused at once: the
    server answers 401 and hangs up without waiting for a byte of the body."""
    head = (
        f"POST /register HTTP/1.1\r\nHost: {split_address(controller.address).netloc}\r\n"
        f"Content-Length: {100 << 20}\r\n{SIGNATURE_HEADER}: {'0' * 64}\r\n\r\n"
    ).encode()
    with connect_to(controller.address) as sock:
        sock.sendall(head)
        with sock.makefile("rb") as reader:
            assert reader.readline().split()[1] == b"401"
            reader.read()  # to the end: the server hung up
    ControllerClient(controller.address, SECRET).ping()


def test_a_head_too_large_is_refused(controller: Controller) -> None:
    """A head of more than MAX_HEAD bytes is cut off there: 431, or a hang-up."""
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (index, b"x" * 1000) for index in range(40))
    assert len(filler) > MAX_HEAD
    with connect_to(controller.address) as sock:
        sock.sendall(b"POST /ping HTTP/1.1\r\n" + filler[:MAX_HEAD])
        with sock.makefile("rb") as reader:
            status_line = reader.readline()
    assert status_line == b"" or status_line.split()[1] in (b"400", b"431")
    ControllerClient(controller.address, SECRET).ping()


def wait_for_hang_up(sock: socket.socket, timeout: float) -> bool:
    """Return whether the peer closed ``sock`` (or answered) within ``timeout`` seconds."""
    return bool(select.select([sock], [], [], timeout)[0])


def small_server(**limits: float) -> SignedServer:
    """Return a started SignedServer answering every request with 200 "pong", its class's
    limits (head_timeout, max_pending) changed."""
    limited: type[SignedServer] = type("LimitedServer", (SignedServer,), limits)
    server = limited("127.0.0.1", 0, SECRET, lambda method, path, body: (200, b"pong"), "t")
    server.start()
    return server


def test_a_dripping_head_is_cut_off_at_its_deadline() -> None:
    """A client sending its head a byte at a time is hung up on once head_timeout has passed
    since it connected, however steadily it drips."""
    server = small_server(head_timeout=0.5)
    try:
        with connect_to(server.address) as sock:
            started = time.monotonic()
            for byte in b"POST /call HTTP/1.1\r\n" + b"X-Slow: " + b"z" * 10_000:
                sock.sendall(bytes([byte]))
                if wait_for_hang_up(sock, 0.05):
                    break
            elapsed = time.monotonic() - started
        assert 0.5 <= elapsed < WAIT
        assert send_raw(server.address, signed(server.address, "/", b"")[0])[0] == 200
    finally:
        server.close()


def test_connections_waiting_for_their_head_are_capped() -> None:
    """Past max_pending connections that have not sent a proved head, each new one drops the
    oldest: the first silent connection is hung up on, and signed requests are still served."""
    server = small_server(max_pending=4)
    silent: List[socket.socket] = []
    try:
        for _ in range(4):
            silent.append(connect_to(server.address))
        status, _, body = send_raw(server.address, signed(server.address, "/", b"")[0])
        assert (status, body) == (200, b"pong")
        assert silent[0].recv(1) == b""
    finally:
        for sock in silent:
            sock.close()
        server.close()


# -- stream handshakes ---------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[tuple[ActorServer, Echo]]:
    """An ActorServer for arbitrary bytes, hosting an Account as "bank" and an Echo as
    "echoer", for the whole module."""
    echo = Echo()
    with ActorServer(SECRET) as server:
        server.register("bank", Account())
        server.register("echoer", echo)
        yield server, echo


def test_server_signs_its_acceptance_and_drops_a_stream_on_a_forged_frame(
    echo_server: tuple[ActorServer, Echo], watch_log: Callable[[str], LogWatcher]
) -> None:
    """Done by hand, the handshake gets a 101 carrying a fresh nonce and the secret's signature
    over both nonces (the request's and its own). A forged frame then ends the stream: the
    server logs it and hangs up, and goes on serving other streams."""
    server, echo = echo_server
    dropped = watch_log("failed its signature check")
    body = _pickle.dumps(("echoer", "echo"))
    captured, client_nonce = signed(server.address, STREAM_PATH, body, upgrade=PROTOCOL)
    with connect_to(server.address) as sock:
        sock.sendall(captured)
        with sock.makefile("rb") as reader:
            status_line = reader.readline(65537)
            headers = http.client.parse_headers(reader)
            assert status_line.split()[:2] == [b"HTTP/1.0", b"101"]
            assert headers["Upgrade"] == PROTOCOL
            server_nonce = bytes.fromhex(headers[NONCE_HEADER])
            assert len(server_nonce) == NONCE_SIZE
            assert server_nonce != client_nonce
            assert headers[SIGNATURE_HEADER] == accept_signature(SECRET, client_nonce, server_nonce)
            sock.sendall(frame(b"\x00" * 32, b"C", 0, b"forged"))
            assert reader.read(1) == b""
    assert dropped.seen.wait(WAIT)
    assert echo.ended.get(timeout=WAIT) == "RpcAuthError"
    client = ActorClient(server.address, "echoer", secret=SECRET, timeout=WAIT)
    with contextlib.closing(client.stream("echo")) as channel:
        channel.send(b"still serving")
        assert channel.recv() == b"still serving"


def test_a_replayed_stream_request_is_refused(echo_server: tuple[ActorServer, Echo]) -> None:
    """A captured stream-opening request opens one stream; sent again it gets 401 and the
    stream method does not run again."""
    server, echo = echo_server
    body = _pickle.dumps(("echoer", "echo"))
    captured, _ = signed(server.address, STREAM_PATH, body, upgrade=PROTOCOL)
    assert send_raw(server.address, captured)[0] == 101
    assert echo.ended.get(timeout=WAIT) == "returned"
    status, _, reason = send_raw(server.address, captured)
    assert (status, reason) == (401, b"replayed request\n")
    assert echo.ended.empty()


def test_refused_stream_requests(echo_server: tuple[ActorServer, Echo], tmp_path: Path) -> None:
    """Unsigned or wrongly signed stream requests get 401 before anything is unpickled; signed
    but unusable ones (not POST, wrong path, unreadable body) get a signed 404."""
    server, echo = echo_server
    url = server.address
    tripwire = pickle.dumps(Tripwire(str(tmp_path / "unpickled")))
    good = pickle.dumps(("echoer", "echo"))
    unsigned = (
        b"POST /stream HTTP/1.1\r\nUpgrade: %s\r\nContent-Length: %d\r\n\r\n"
        % (PROTOCOL.encode(), len(tripwire))
        + tripwire
    )
    cases: list[tuple[bytes, bytes, int]] = [
        (unsigned, b"", 401),
        (signed(url, STREAM_PATH, tripwire, upgrade=PROTOCOL, secret="wrong-secret")[0], b"", 401),
        (*signed(url, STREAM_PATH, good, upgrade=PROTOCOL, method="GET"), 404),
        (*signed(url, "/call", good, upgrade=PROTOCOL), 404),
        (*signed(url, STREAM_PATH, b"not a pickle", upgrade=PROTOCOL), 404),
    ]
    for data, nonce, expected in cases:
        status, headers, reply = send_raw(url, data)
        assert status == expected, data[:40]
        if expected != 401:
            assert verify_reply(SECRET, nonce, status, reply, headers[SIGNATURE_HEADER])
    assert not (tmp_path / "unpickled").exists()
    assert echo.ended.empty()


@given(data=st.one_of(st.binary(max_size=4096), st.binary(min_size=36, max_size=200)))
def test_arbitrary_frames_end_the_stream_and_nothing_else(
    fuzzed: tuple[ActorServer, Echo], data: bytes
) -> None:
    """Whatever bytes follow an accepted stream handshake, they are refused as frames: the
    stream method ends with RpcAuthError or RpcProtocolError (or returns, for no bytes at
    all), nothing is echoed back, and the server goes on opening streams."""
    server, echo = fuzzed
    body = _pickle.dumps(("echoer", "echo"))
    captured, _ = signed(server.address, STREAM_PATH, body, upgrade=PROTOCOL)
    with connect_to(server.address) as sock:
        sock.sendall(captured)
        with sock.makefile("rb") as reader:
            assert reader.readline(65537).split()[1] == b"101"
            http.client.parse_headers(reader)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            assert reader.read() == b""
    ended = echo.ended.get(timeout=WAIT)
    assert ended in (("RpcAuthError", "RpcProtocolError") if data else ("returned",))
    client = ActorClient(server.address, "echoer", secret=SECRET, timeout=WAIT)
    with contextlib.closing(client.stream("echo")) as channel:
        channel.send(b"still serving")
        assert channel.recv() == b"still serving"
    assert echo.ended.get(timeout=WAIT) == "returned"


def test_controller_has_no_streams() -> None:
    """A Controller serves no streams: a signed stream request gets a 404, RpcProtocolError."""
    with Controller(SECRET) as controller:
        client = ActorClient(controller.address, "anything", secret=SECRET, timeout=WAIT)
        with pytest.raises(RpcProtocolError, match="404"):
            client.stream("echo")


# -- arbitrary bytes ------------------------------------------------------------


def mutated_heads() -> st.SearchStrategy[bytes]:
    """Signed heads with one line replaced, cut short, or garbled, then arbitrary bytes."""

    def mutate(index: int, junk: bytes, cut: int, tail: bytes) -> bytes:
        data, _ = signed("http://127.0.0.1:1", "/call", b"body")
        lines = data.split(b"\r\n")
        lines[index % len(lines)] = junk
        return b"\r\n".join(lines)[: max(cut, 1)] + tail

    return st.builds(
        mutate, st.integers(0, 20), st.binary(max_size=80), st.integers(1, 2000), st.binary()
    )


@given(
    data=st.one_of(
        st.binary(max_size=4096),
        st.builds(lambda junk: b"POST /call HTTP/1.1\r\n" + junk, st.binary(max_size=4096)),
        mutated_heads(),
    )
)
def test_arbitrary_bytes_get_a_clean_refusal(fuzzed: tuple[ActorServer, Echo], data: bytes) -> None:
    """Whatever bytes a connection sends, the server answers with an error status (4xx or
    5xx, never success or a stream) or hangs up, within bounded time, and goes on serving
    signed calls."""
    server, _ = fuzzed
    with connect_to(server.address) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if answer:
        status_line = answer.split(b"\r\n", 1)[0].split()
        assert status_line[0].startswith(b"HTTP/")
        assert 400 <= int(status_line[1]) < 600
    assert ActorClient(server.address, "bank", secret=SECRET, timeout=WAIT).call("add", 2, 2) == 4


# -- memory -------------------------------------------------------------------------

SERVER_SCRIPT = """
import sys
from contextthreads.fluster import Controller
with Controller(sys.argv[1]) as controller:
    print(controller.port, flush=True)
    sys.stdin.read()
"""
#: What one connection that has not proved itself may cost a server, at most: its head
#: (MAX_HEAD) and a thread (stack, state, 8 KiB read buffer, the allocator's share; measured
#: at 60 to 130 KiB on CPython 3.9 to 3.15 and Linux). On a free-threaded build each thread
#: has mimalloc heaps of its own, a page per size class and kind of object it allocates:
#: 1.05 to 1.2 MiB a connection on 3.13t, however many came (1,000, 5,000 or 15,000 stalled
#: heads). docs/howto/fluster-network.md states the same bounds.
FREE_THREADED = not getattr(sys, "_is_gil_enabled", lambda: True)()
PER_CONNECTION = MAX_HEAD + (1536 if FREE_THREADED else 192) * 1024
#: PyPy gives memory back only at its GC's major collections, and keeps what its JIT
#: compiles: the same flood grew a PyPy 3.9 controller by 25 to 27 MiB (1,000 stalled heads),
#: 46 (4,000 more) and 54 (10,000 more), its threads and file descriptors staying few.
LAZY_HEAP = 64 * 1024 * 1024 if sys.implementation.name == "pypy" else 0
MEMORY_BOUND = MAX_PENDING * PER_CONNECTION + LAZY_HEAP


def memory_kib(pid: int, field: str) -> int:
    """Return a memory figure of process ``pid`` from /proc (VmRSS, VmHWM...), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def flood(url: str, fake_bodies: int, slow_heads: int) -> List[socket.socket]:
    """Attack ``url``: connections announcing 100 MiB bodies under a made-up signature, each
    sending body until the server hangs up; then connections that send most of a head and
    stall. Return the stalled ones, still open."""
    netloc = split_address(url).netloc
    fake = (
        f"POST /register HTTP/1.1\r\nHost: {netloc}\r\nContent-Length: {100 << 20}\r\n"
        f"{SIGNATURE_HEADER}: {'0' * 64}\r\n\r\n"
    ).encode()
    chunk = b"\x00" * (1 << 20)

    def send_fake_body() -> None:
        with contextlib.suppress(OSError), connect_to(url) as sock:
            sock.sendall(fake)
            for _ in range(100):
                sock.sendall(chunk)

    senders = [threading.Thread(target=send_fake_body, daemon=True) for _ in range(fake_bodies)]
    for sender in senders:
        sender.start()
    stalled = []
    partial = b"POST /call HTTP/1.1\r\n" + b"X-Pad: " + b"p" * (MAX_HEAD - 100) + b"\r\n"
    for _ in range(slow_heads):
        sock = connect_to(url)
        with contextlib.suppress(OSError):
            sock.sendall(partial)
        stalled.append(sock)
    for sender in senders:
        sender.join(WAIT)
        assert not sender.is_alive()
    return stalled


def test_a_flood_of_unproved_connections_stays_within_the_memory_bound() -> None:
    """A controller in a process of its own, flooded with 500 connections announcing 100 MiB
    bodies under a made-up signature (each sending until the server hangs up) and 1,000 that
    send most of a head and stall, grows by less than MAX_PENDING x (MAX_HEAD + 192 KiB;
    1.5 MiB with the GIL off; 64 MiB more on PyPy),
    peak RSS measured from /proc, and still answers signed calls. (Reading whole bodies
    before checking them, three such connections once grew a server by 300 MiB.)"""
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, SECRET], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        client = ControllerClient(url, SECRET, timeout=WAIT)
        for _ in range(3):
            client.ping()
        baseline = memory_kib(server.pid, "VmRSS")
        with open(f"/proc/{server.pid}/clear_refs", "w") as refs:
            refs.write("5")  # restart VmHWM, the peak, from the current RSS
        stalled = flood(url, 500, 1000)
        try:
            client.ping()  # accepted after every connection of the flood: all are in
        finally:
            for sock in stalled:
                sock.close()
        growth = (memory_kib(server.pid, "VmHWM") - baseline) * 1024
        assert growth < MEMORY_BOUND, f"grew {growth >> 10} KiB, bound {MEMORY_BOUND >> 10} KiB"
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(WAIT)
