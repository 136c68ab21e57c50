"""Signed frame streams: frames over socket pairs, and both halves of the handshake.

Frame-level tests put a ``FrameChannel`` on the ends of a ``socket.socketpair()``.
Tampering tests capture a frame's bytes off the wire and write them back,
changed, replayed or reflected, with ``sendall``. Client handshake tests open
streams to a fake server (``fakes``): a raw listening socket whose one
connection a background ``ContextThread`` answers; the server half is
``ServerHandshake`` (over a real server, see ``test_http``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import struct
import time
from typing import Any, Callable, Dict, Iterator, List, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextthreads import ContextThread
from contextthreads.fluster import RpcAuthError, RpcError, RpcProtocolError, RpcTimeoutError
from contextthreads.fluster._stream import (
    FrameChannel,
    ServerHandshake,
    accept_signature,
    connect,
    server_channel,
)
from contextthreads.fluster._wire import MAX_BODY, NONCE_HEADER, NONCE_SIZE, SIGNATURE_HEADER
from contextthreads.fluster._wire import STREAM_PROTOCOL as PROTOCOL

from .fakes import FakeServer, Request, answer_bytes, reply_with
from .support import SECRET, WAIT, frame, joined

KEY = hashlib.sha256(b"stream-test-key").digest()
OTHER_KEY = hashlib.sha256(b"another-stream-test-key").digest()
#: length (4 bytes) | HMAC-SHA256 (32 bytes), before every body.
HEADER_SIZE = 36
#: Bodies from this size on are sent and MACed in pieces.
SMALL = 64 * 1024
LARGE = 100 * 1024
STREAM_PATH = "/stream"

ChannelMaker = Callable[[socket.socket, io.BufferedReader], FrameChannel]


# -- helpers ------------------------------------------------------------------


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes from ``sock`` (its timeout bounds each wait)."""
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        chunk = sock.recv(min(remaining, 64 * 1024))
        if not chunk:
            raise AssertionError(f"the peer hung up {remaining} bytes short")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def keyed(key: bytes, *, is_client: bool) -> ChannelMaker:
    """Return a maker of channels keyed with ``key`` directly."""

    def make(sock: socket.socket, reader: io.BufferedReader) -> FrameChannel:
        return FrameChannel(sock, reader, key, is_client=is_client)

    return make


def session(secret: str, client_nonce: bytes, server_nonce: bytes) -> ChannelMaker:
    """Return a maker of server channels of the session these nonces and ``secret`` make."""

    def make(sock: socket.socket, reader: io.BufferedReader) -> FrameChannel:
        return server_channel(sock, reader, secret, client_nonce, server_nonce)

    return make


@contextlib.contextmanager
def wire(make: ChannelMaker) -> Iterator[tuple[socket.socket, FrameChannel]]:
    """Yield (raw end, channel on the other end) of a socket pair; close both afterwards.

    Bytes written to the raw end reach the channel's ``recv()``; what the
    channel sends can be read off the raw end.
    """
    raw, end = socket.socketpair()
    try:
        raw.settimeout(WAIT)
        end.settimeout(WAIT)
        channel = make(end, end.makefile("rb"))
        try:
            yield raw, channel
        finally:
            channel.close()
    finally:
        raw.close()
        end.close()


@contextlib.contextmanager
def channel_pair(
    client_key: bytes = KEY, server_key: bytes = KEY
) -> Iterator[tuple[FrameChannel, FrameChannel]]:
    """Yield (client, server) channels on the two ends of a socket pair; close both afterwards."""
    left, right = socket.socketpair()
    try:
        left.settimeout(WAIT)
        right.settimeout(WAIT)
        client = FrameChannel(left, left.makefile("rb"), client_key, is_client=True)
        try:
            server = FrameChannel(right, right.makefile("rb"), server_key, is_client=False)
            try:
                yield client, server
            finally:
                server.close()
        finally:
            client.close()
    finally:
        left.close()
        right.close()


def capture(bodies: Sequence[bytes], make: ChannelMaker | None = None) -> list[bytes]:
    """Send ``bodies`` from a channel (a client keyed with KEY by default); return each frame's
    bytes as read off the other end of the connection."""
    frames: list[bytes] = []
    with wire(make or keyed(KEY, is_client=True)) as (raw, sender):
        for body in bodies:
            sender.send(body)
            frames.append(recv_exactly(raw, HEADER_SIZE + len(body)))
    return frames


class Sender:
    """Send bodies over a channel from a background ContextThread, keeping any error."""

    def __init__(self, channel: FrameChannel, bodies: Sequence[bytes]) -> None:
        self.errors: list[BaseException] = []
        self._thread = ContextThread(
            target=self._run, args=(channel, list(bodies)), name="stream-test-sender", daemon=True
        )
        self._thread.start()

    def _run(self, channel: FrameChannel, bodies: list[bytes]) -> None:
        try:
            for body in bodies:
                channel.send(body)
        except BaseException as exc:
            self.errors.append(exc)

    def finish(self) -> None:
        """Wait (bounded) for every body to be sent; fail if sending failed."""
        joined(self._thread)
        assert self.errors == []


def with_byte_changed(data: bytes, index: int, xor: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= xor
    return bytes(changed)


# -- frames over a socket pair -------------------------------------------------


def test_frames_round_trip_in_order_both_ways() -> None:
    """Bodies arrive intact and in order, each way: empty ones, ones around and above the 64 KiB
    one-shot threshold, and hundreds of small ones; then a clean end gives None."""
    bodies = [
        b"",
        b"x",
        os.urandom(SMALL - 1),
        os.urandom(SMALL),
        os.urandom(LARGE),
        b"",
        *(index.to_bytes(4, "big") for index in range(500)),
        os.urandom(LARGE),
    ]
    with channel_pair() as (client, server):
        for sending, receiving in ((client, server), (server, client)):
            sender = Sender(sending, bodies)
            received = [receiving.recv() for _ in bodies]
            sender.finish()
            assert received == bodies
        client.close()
        assert server.recv() is None


@given(bodies=st.lists(st.binary(max_size=2048), max_size=20))
def test_any_bodies_round_trip(bodies: list[bytes]) -> None:
    """Whatever the bodies, the receiver gets exactly them, in order, then None at the end."""
    with channel_pair() as (client, server):
        for body in bodies:
            client.send(body)
        client.close()
        assert [server.recv() for _ in bodies] == bodies
        assert server.recv() is None


def test_recv_returns_none_at_a_clean_end_between_frames() -> None:
    """A peer hanging up between frames (or before any) is a clean end: None, and None again."""
    with channel_pair() as (client, server):
        server.close()
        assert client.recv() is None
    with channel_pair() as (client, server):
        client.send(b"last")
        client.close()
        assert server.recv() == b"last"
        assert server.recv() is None
        assert server.recv() is None
    with wire(keyed(KEY, is_client=False)) as (raw, server):
        raw.sendall(frame(KEY, b"C", 0, b"half-closed"))
        raw.shutdown(socket.SHUT_WR)
        assert server.recv() == b"half-closed"
        assert server.recv() is None


def test_send_and_recv_run_at_once() -> None:
    """One thread may send while another receives on the same channel: both ends stream 1 MiB
    each way at once (more than the socket buffers hold) without deadlock or mix-up."""
    bodies = [bytes([index]) * (16 * 1024) for index in range(64)]
    with channel_pair() as (client, server):
        client_sender = Sender(client, bodies)
        server_sender = Sender(server, bodies)
        assert [server.recv() for _ in bodies] == bodies
        assert [client.recv() for _ in bodies] == bodies
        client_sender.finish()
        server_sender.finish()


def test_wire_format_is_length_mac_body() -> None:
    """Each frame is its big-endian length, the HMAC-SHA256 of direction (C or S), 8-byte
    per-direction counter and body, then the body: the same below and above 64 KiB."""
    bodies = [b"", b"abc", os.urandom(SMALL - 1), os.urandom(LARGE)]
    client_frames = capture(bodies, keyed(KEY, is_client=True))
    server_frames = capture(bodies, keyed(KEY, is_client=False))
    for counter, body in enumerate(bodies):
        assert client_frames[counter] == frame(KEY, b"C", counter, body)
        assert server_frames[counter] == frame(KEY, b"S", counter, body)


def test_settimeout_bounds_recv() -> None:
    """settimeout() bounds a receive: with nothing arriving, recv() raises socket.timeout."""
    with channel_pair() as (client, _):
        client.settimeout(0.05)
        with pytest.raises(socket.timeout):
            client.recv()


def test_close_is_idempotent() -> None:
    """close() may be called more than once, and the peer then sees a clean end."""
    with channel_pair() as (client, server):
        client.close()
        client.close()
        assert server.recv() is None


def test_peer_closed_tells_a_hung_up_stream_without_reading() -> None:
    """peer_closed() is False on an open, quiet stream and while a frame waits unread (which
    it leaves for recv()), and True once the peer has hung up."""
    with channel_pair() as (client, server):
        assert not client.peer_closed()
        server.send(b"waiting")
        assert not client.peer_closed()
        assert client.recv() == b"waiting"
        server.close()
        assert client.peer_closed()


# -- forged, replayed, reflected and truncated frames ---------------------------


def test_captured_frame_is_accepted_once() -> None:
    """A frame captured off the wire is delivered once; the same bytes again are a replay,
    refused with RpcAuthError."""
    (captured,) = capture([b"pay alice 10"])
    with wire(keyed(KEY, is_client=False)) as (raw, server):
        raw.sendall(captured)
        assert server.recv() == b"pay alice 10"
        raw.sendall(captured)
        with pytest.raises(RpcAuthError):
            server.recv()


def test_reordered_frames_are_refused() -> None:
    """A frame delivered before the one sent ahead of it fails its check."""
    first, second = capture([b"one", b"two"])
    with wire(keyed(KEY, is_client=False)) as (raw, server):
        raw.sendall(second + first)
        with pytest.raises(RpcAuthError):
            server.recv()


def test_reflected_frames_are_refused() -> None:
    """A frame sent back to a channel of the side that made it is refused: client to client,
    server to server, even though the key and counter match."""
    (client_frame,) = capture([b"ping"], keyed(KEY, is_client=True))
    (server_frame,) = capture([b"pong"], keyed(KEY, is_client=False))
    for captured, is_client in ((client_frame, True), (server_frame, False)):
        with wire(keyed(KEY, is_client=is_client)) as (raw, channel):
            raw.sendall(captured)
            with pytest.raises(RpcAuthError):
                channel.recv()


def test_frame_made_with_another_key_is_refused() -> None:
    """A well-formed frame whose MAC uses another key is refused with RpcAuthError."""
    (foreign,) = capture([b"hello"], keyed(OTHER_KEY, is_client=True))
    with wire(keyed(KEY, is_client=False)) as (raw, server):
        raw.sendall(foreign)
        with pytest.raises(RpcAuthError):
            server.recv()


@given(body=st.binary(max_size=300), position=st.integers(min_value=0), xor=st.integers(1, 255))
def test_any_single_byte_change_is_refused(body: bytes, position: int, xor: int) -> None:
    """Changing any one byte of a frame gets it refused: RpcAuthError if the byte is in the MAC
    or the body; in the length, RpcAuthError or RpcProtocolError (the frame no longer parses).

    The first byte (the top of the length) is left to test_header_beyond_max_body_is_refused:
    a small change there makes the receiver wait for up to 256 MiB before anything fails.
    """
    (captured,) = capture([body])
    index = 1 + position % (len(captured) - 1)
    tampered = with_byte_changed(captured, index, xor)
    with wire(keyed(KEY, is_client=False)) as (raw, server):
        raw.sendall(tampered)
        raw.shutdown(socket.SHUT_WR)
        if index < 4:
            with pytest.raises((RpcAuthError, RpcProtocolError)):
                server.recv()
        else:
            with pytest.raises(RpcAuthError):
                server.recv()


def test_header_beyond_max_body_is_refused() -> None:
    """A header announcing more than MAX_BODY bytes is a protocol error at once, without
    waiting for the body; so is a flip of the length's top byte that goes past it."""
    too_long = struct.pack("!I32s", MAX_BODY + 1, bytes(32))
    (captured,) = capture([b"tiny"])
    for header in (too_long, with_byte_changed(captured, 0, 0x10)[:HEADER_SIZE]):
        with wire(keyed(KEY, is_client=False)) as (raw, server):
            raw.sendall(header)  # the connection stays open: no body, no end
            with pytest.raises(RpcProtocolError, match="exceeds"):
                server.recv()


@pytest.mark.parametrize("cut", [1, 4, 20, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 5, -1])
def test_stream_ending_inside_a_frame_is_a_protocol_error(cut: int) -> None:
    """A stream that ends inside a header or a body is malformed: RpcProtocolError, not None."""
    (captured,) = capture([b"ten bytes!"])
    with wire(keyed(KEY, is_client=False)) as (raw, server):
        raw.sendall(captured[:cut])
        raw.shutdown(socket.SHUT_WR)
        with pytest.raises(RpcProtocolError, match="ended inside"):
            server.recv()


# -- the client's handshake, with a fake server -----------------------------------


def test_connect_needs_an_http_address() -> None:
    """connect() takes only http(s)://host:port addresses."""
    for url in ("ftp://127.0.0.1:1", "http://127.0.0.1", "127.0.0.1:1"):
        with pytest.raises(ValueError, match="expected an address"):
            connect(url, STREAM_PATH, SECRET, b"", WAIT)


def test_fake_server_holding_the_secret_completes_the_handshake() -> None:
    """A 101 with a fresh nonce signed by the secret over both nonces is accepted; connect()'s
    channel and server_channel() then agree on the session key. A frame of that session is
    refused by a channel of another session (another server nonce) or another secret."""
    seen: dict[str, bytes] = {}

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        server_nonce = os.urandom(NONCE_SIZE)
        seen["server_nonce"] = server_nonce
        signature = accept_signature(SECRET, request.nonce, server_nonce)
        conn.sendall(
            answer_bytes(
                "HTTP/1.0 101 Switching Protocols",
                {NONCE_HEADER: server_nonce.hex(), SIGNATURE_HEADER: signature},
            )
        )
        seen["frame"] = reader.read(HEADER_SIZE + len(b"hello"))
        channel = server_channel(conn, reader, SECRET, request.nonce, server_nonce)
        channel.send(b"welcome")
        assert channel.recv() is None

    with FakeServer(answer) as fake:
        channel = connect(fake.address, STREAM_PATH, SECRET, b"payload", WAIT)
        try:
            channel.send(b"hello")
            assert channel.recv() == b"welcome"
        finally:
            channel.close()
    request = fake.request
    assert request is not None
    assert request.line == f"POST {STREAM_PATH} HTTP/1.1"
    assert request.headers["Upgrade"] == PROTOCOL
    assert request.signed_for(fake.netloc)
    assert request.body == b"payload"

    client_nonce, server_nonce = request.nonce, seen["server_nonce"]
    with wire(session(SECRET, client_nonce, server_nonce)) as (raw, server):
        raw.sendall(seen["frame"])
        assert server.recv() == b"hello"
    for other in (
        session(SECRET, client_nonce, os.urandom(NONCE_SIZE)),
        session(SECRET, os.urandom(NONCE_SIZE), server_nonce),
        session("other-secret", client_nonce, server_nonce),
    ):
        with wire(other) as (raw, server):
            raw.sendall(seen["frame"])
            with pytest.raises(RpcAuthError):
                server.recv()


Forgery = Callable[[Request], Dict[str, str]]


def _signed_for(secret: str, client_nonce: bytes, signed_nonce: bytes, sent_nonce: str) -> Forgery:
    def forge(request: Request) -> dict[str, str]:
        nonce = request.nonce if client_nonce == b"" else client_nonce
        return {
            NONCE_HEADER: sent_nonce,
            SIGNATURE_HEADER: accept_signature(secret, nonce, signed_nonce),
        }

    return forge


SERVER_NONCE = bytes(range(NONCE_SIZE))


FORGERIES: dict[str, Forgery] = {
    "another secret": _signed_for("other-secret", b"", SERVER_NONCE, SERVER_NONCE.hex()),
    "another client nonce": _signed_for(
        SECRET, b"\xff" * NONCE_SIZE, SERVER_NONCE, SERVER_NONCE.hex()
    ),
    "another server nonce": _signed_for(SECRET, b"", b"\xee" * NONCE_SIZE, SERVER_NONCE.hex()),
    "short server nonce": _signed_for(SECRET, b"", SERVER_NONCE[:8], SERVER_NONCE[:8].hex()),
    "nonce not hex": _signed_for(SECRET, b"", b"", "zz" * NONCE_SIZE),
    "no nonce": lambda request: {SIGNATURE_HEADER: accept_signature(SECRET, request.nonce, b"")},
    "no signature": lambda request: {NONCE_HEADER: SERVER_NONCE.hex()},
    "the request's own signature": lambda request: {
        NONCE_HEADER: SERVER_NONCE.hex(),
        SIGNATURE_HEADER: request.headers[SIGNATURE_HEADER],
    },
}


@pytest.mark.parametrize("forge", list(FORGERIES.values()), ids=list(FORGERIES))
def test_accept_without_the_secrets_signature_is_refused(forge: Forgery) -> None:
    """A 101 whose nonce and signature are not the secret's over both nonces (a 16-byte fresh
    server nonce) makes connect() raise RpcAuthError."""

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        headers = {"Connection": "Upgrade", "Upgrade": PROTOCOL, **forge(request)}
        conn.sendall(answer_bytes("HTTP/1.0 101 Switching Protocols", headers))

    with FakeServer(answer) as fake, pytest.raises(RpcAuthError, match="signature"):
        connect(fake.address, STREAM_PATH, SECRET, b"", WAIT)


def test_401_answer_is_an_auth_error() -> None:
    """A 401 answer (the server refused our signature) raises RpcAuthError."""
    answer = reply_with(answer_bytes("HTTP/1.0 401 Unauthorized", {"Content-Length": "0"}))
    with FakeServer(answer) as fake, pytest.raises(RpcAuthError, match="refused our request"):
        connect(fake.address, STREAM_PATH, SECRET, b"", WAIT)


def test_error_status_is_a_protocol_error() -> None:
    """A 500 answer raises RpcProtocolError naming the status and showing the body's start."""
    answer = reply_with(
        answer_bytes("HTTP/1.0 500 Internal Server Error", {"Content-Length": "5"}, b"boom!")
    )
    with FakeServer(answer) as fake, pytest.raises(RpcProtocolError, match="500") as info:
        connect(fake.address, STREAM_PATH, SECRET, b"", WAIT)
    assert "boom!" in str(info.value)


def test_silent_server_times_out() -> None:
    """A server that accepts and says nothing makes connect() raise RpcTimeoutError once its
    timeout passes; connect() then hangs up."""

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        assert conn.recv(1) == b""

    with FakeServer(answer) as fake:
        started = time.monotonic()
        with pytest.raises(RpcTimeoutError):
            connect(fake.address, STREAM_PATH, SECRET, b"", 0.2)
        assert time.monotonic() - started < WAIT


MALFORMED_ANSWERS: List[Any] = [
    pytest.param(b"", id="hang up"),
    pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", id="not http"),
    pytest.param(b"HTTP/1.0\r\n\r\n", id="no status"),
    pytest.param(b"HTTP/1.0 abc Nope\r\n\r\n", id="word status"),
    pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", id="200"),
    pytest.param(
        b"HTTP/1.0 101 Switching Protocols\r\n" + b"X-Filler: x\r\n" * 150 + b"\r\n",
        id="too many headers",
    ),
    pytest.param(
        b"HTTP/1.0 \xb9\xb2\xb3 Odd\r\n\r\n",
        id="superscript status code",
    ),
    pytest.param(
        b"HTTP/1.0 404 Not Found\r\nContent-Length: \xb2\r\n\r\nxx",
        id="superscript content length",
    ),
]


@pytest.mark.parametrize("data", MALFORMED_ANSWERS)
def test_malformed_answers_raise_rpc_errors(data: bytes) -> None:
    """Whatever a server answers, connect() fails with an RpcError subclass, never another
    exception."""
    with FakeServer(reply_with(data)) as fake, pytest.raises(RpcError):
        connect(fake.address, STREAM_PATH, SECRET, b"", WAIT)


# -- the server's handshake ----------------------------------------------------------


def test_server_handshake_answers_with_a_fresh_nonce_signed_over_both() -> None:
    """The server half accepts each stream with a fresh nonce of its own, signed by the
    secret over the client's nonce (the request's) and its own."""
    client_nonce = os.urandom(NONCE_SIZE)
    answers = [dict(ServerHandshake(SECRET, client_nonce).headers()) for _ in range(2)]
    assert answers[0][NONCE_HEADER] != answers[1][NONCE_HEADER]
    for headers in answers:
        assert (headers["Connection"], headers["Upgrade"]) == ("Upgrade", PROTOCOL)
        server_nonce = bytes.fromhex(headers[NONCE_HEADER])
        assert len(server_nonce) == NONCE_SIZE
        assert headers[SIGNATURE_HEADER] == accept_signature(SECRET, client_nonce, server_nonce)


def test_the_two_halves_of_the_handshake_agree() -> None:
    """A server answering with ServerHandshake is accepted by connect(), and the two ends of
    the stream then exchange frames both ways under one session key."""

    def answer(conn: socket.socket, reader: io.BufferedReader, request: Request) -> None:
        assert request.body == b"payload"
        handshake = ServerHandshake(SECRET, request.nonce)
        conn.sendall(answer_bytes("HTTP/1.0 101 Switching Protocols", dict(handshake.headers())))
        channel = handshake.channel(conn, reader)
        assert channel.recv() == b"hello"
        channel.send(b"welcome")
        assert channel.recv() is None

    with FakeServer(answer) as fake:
        channel = connect(fake.address, STREAM_PATH, SECRET, b"payload", WAIT)
        with contextlib.closing(channel):
            channel.send(b"hello")
            assert channel.recv() == b"welcome"
