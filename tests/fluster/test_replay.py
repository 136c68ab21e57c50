"""ReplayGuard: each (timestamp, nonce) admitted once, only while fresh, in bounded memory.

Driven with a clock of the test's own: no waiting for time to pass.
"""

from __future__ import annotations

from typing import List, Tuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contextthreads.fluster._replay import ReplayGuard
from contextthreads.fluster._wire import CLOCK_WINDOW


class Clock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def nonce(index: int) -> bytes:
    """Return a 16-byte nonce made from ``index``."""
    return index.to_bytes(16, "big")


def test_a_nonce_is_good_once_and_only_within_the_window() -> None:
    """A fresh request is admitted; the same nonce again is a replay, even much later; a
    timestamp more than the window away from the clock, either way, is refused."""
    clock = Clock()
    guard = ReplayGuard(clock=clock)
    assert guard.window == CLOCK_WINDOW == 60.0
    assert guard.admit(clock.now, nonce(1)) is None
    assert guard.admit(clock.now, nonce(1)) == "replayed request"
    assert guard.admit(clock.now - 59, nonce(2)) is None
    assert guard.admit(clock.now + 59, nonce(3)) is None
    for skew in (-61.0, 61.0):
        assert guard.admit(clock.now + skew, nonce(4)) == (
            "timestamp outside the server's clock window"
        )
    clock.now += 1000
    assert guard.admit(clock.now - 1000, nonce(1)) == "timestamp outside the server's clock window"
    assert guard.admit(clock.now, nonce(5)) is None
    assert len(guard) == 1  # the others expired with their timestamps


def test_when_full_it_forgets_the_oldest_and_refuses_everything_as_old() -> None:
    """At capacity the oldest nonce is forgotten, and from then on nothing signed at or before
    its timestamp is admitted: the forgotten nonce cannot come back."""
    clock = Clock()
    guard = ReplayGuard(capacity=3, clock=clock)
    for index, age in enumerate((30, 20, 10)):
        assert guard.admit(clock.now - age, nonce(index)) is None
    assert guard.admit(clock.now - 40, nonce(9)) == (
        "signed before every request the server remembers"
    )
    assert guard.admit(clock.now, nonce(3)) is None  # forgets nonce 0, signed 30 s ago
    assert len(guard) == 3
    assert guard.admit(clock.now - 30, nonce(0)) == "replayed request"
    assert guard.admit(clock.now - 25, nonce(10)) == (
        "signed before every request the server remembers"
    )
    assert guard.admit(clock.now - 15, nonce(11)) is None  # forgets nonce 1, signed 20 s ago


def test_it_needs_a_window_and_room() -> None:
    """A guard without a positive window or capacity is a ValueError."""
    for window, capacity in ((0.0, 1), (1.0, 0)):
        with pytest.raises(ValueError, match="positive"):
            ReplayGuard(window, capacity)


Step = Tuple[float, float, int]


@given(
    steps=st.lists(
        st.tuples(st.floats(0, 30), st.floats(-70, 70), st.integers(0, 12)), max_size=60
    ),
    capacity=st.integers(1, 6),
)
def test_no_request_is_ever_admitted_twice(steps: List[Step], capacity: int) -> None:
    """Whatever the order, clock skew and replays of requests as time goes by (a replay
    repeats a request's signed timestamp and nonce): none is admitted twice, the guard never
    holds more than its capacity, and a fresh request signed now, after everything admitted
    so far, is always admitted."""
    clock = Clock()
    guard = ReplayGuard(capacity=capacity, clock=clock)
    signed_at: dict[int, float] = {}
    admitted: set[int] = set()
    latest = float("-inf")
    for elapsed, skew, index in steps:
        clock.now += elapsed
        timestamp = signed_at.setdefault(index, clock.now + skew)
        if guard.admit(timestamp, nonce(index)) is None:
            assert index not in admitted
            admitted.add(index)
            latest = max(latest, timestamp)
        assert len(guard) <= capacity
    clock.now = max(clock.now, latest) + 1
    assert guard.admit(clock.now, nonce(1000)) is None
