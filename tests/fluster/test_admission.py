"""Admission: a bounded number of unproved connections, the oldest dropped to make room."""

from __future__ import annotations

import socket
from typing import Iterator, List, Tuple

import pytest

from contextthreads.fluster._admission import Admission

from .support import WAIT


@pytest.fixture
def pairs() -> Iterator[List[Tuple[socket.socket, socket.socket]]]:
    """Four connected socket pairs (server end, client end), closed afterwards."""
    made = [socket.socketpair() for _ in range(4)]
    for _, client_end in made:
        client_end.settimeout(WAIT)
    yield made
    for server_end, client_end in made:
        server_end.close()
        client_end.close()


def test_a_full_admission_drops_the_oldest_waiting_connection(
    pairs: List[Tuple[socket.socket, socket.socket]],
) -> None:
    """With every slot taken, admitting one more hangs up on the oldest connection still
    waiting (its peer sees the end), which can no longer prove itself, and takes its slot
    once it is released; proved connections are never dropped."""
    admission = Admission(2)
    (first, first_peer), (second, _), (third, _), (fourth, _) = pairs
    assert admission.admit(first)
    assert admission.admit(second)
    assert admission.proved(second)
    assert admission.admit(third)
    admission.wait = 0.0
    assert not admission.admit(fourth)  # the dropped one still holds its slot
    assert first_peer.recv(1) == b""
    assert not admission.proved(first)
    assert len(admission) == 1
    assert admission.admit(fourth)
    admission.release(third)
    admission.release(third)
    assert len(admission) == 1
