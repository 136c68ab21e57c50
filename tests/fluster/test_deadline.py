"""Reading against a deadline: one bound for a whole exchange, and a budget of bytes."""

from __future__ import annotations

import io
import socket
import ssl
import time

import pytest

from contextthreads.fluster._deadline import (
    Deadline,
    GuardedReader,
    buffered,
    open_connection,
    tls_handshake,
)

from .support import WAIT


def test_a_deadline_counts_down_once() -> None:
    """remaining() is what is left of the timeout, None without one, and socket.timeout once
    nothing is left."""
    assert Deadline(None).remaining() is None
    left = Deadline(WAIT).remaining()
    assert left is not None
    assert 0 < left <= WAIT
    with pytest.raises(socket.timeout):
        Deadline(0).remaining()


def read_byte_by_byte(peer: socket.socket, reader: io.BufferedReader) -> None:
    """Have ``peer`` send byte after byte, each read at once, for ever."""
    while True:
        peer.sendall(b"x")
        reader.read(1)


def test_a_deadline_bounds_all_the_reads_together() -> None:
    """A peer whose every byte arrives at once still runs out of the deadline: the reader
    raises socket.timeout once the whole of it has passed."""
    left, right = socket.socketpair()
    with left, right:
        started = time.monotonic()
        reader = buffered(GuardedReader(right, Deadline(0.3)))
        with pytest.raises(socket.timeout):
            read_byte_by_byte(left, reader)
        assert 0.3 <= time.monotonic() - started < WAIT


def test_a_budget_ends_the_stream_where_it_runs_out() -> None:
    """With a budget, the reader gives at most that many bytes, then reports the end and is
    marked exhausted; released, it reads on."""
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(WAIT)
        raw = GuardedReader(right, budget=10)
        reader = buffered(raw)
        left.sendall(b"0123456789abcdef")
        assert reader.read(16) == b"0123456789"
        assert raw.exhausted
        raw.release()
        assert reader.read(6) == b"abcdef"


def test_connecting_to_nothing_raises_an_os_error() -> None:
    """open_connection() to a port where nothing listens raises ConnectionRefusedError."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        with pytest.raises(ConnectionRefusedError):
            open_connection("127.0.0.1", placeholder.getsockname()[1], Deadline(WAIT))


def test_a_tls_handshake_with_a_silent_peer_ends_at_the_deadline() -> None:
    """A TLS handshake whose peer never answers raises socket.timeout at the deadline."""
    left, right = socket.socketpair()
    with left, right:
        context = ssl.create_default_context()
        tls = context.wrap_socket(left, server_hostname="localhost", do_handshake_on_connect=False)
        with tls:
            started = time.monotonic()
            with pytest.raises(socket.timeout):
                tls_handshake(tls, Deadline(0.2))
            assert 0.2 <= time.monotonic() - started < WAIT
