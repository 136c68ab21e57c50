"""Refusing replays: each signed request is good once, and only for a short window.

A server keeps a ``ReplayGuard``. A request is admitted only if its signed
timestamp is within ``window`` seconds of the server's clock and its nonce
has not been seen in that time. Memory is bounded: at most ``capacity``
nonces are kept. When more arrive within one window, the oldest are
forgotten and the guard refuses everything signed at or before the newest
it forgot, so a forgotten nonce can never be replayed: under such load the
window shrinks, it never opens.
"""

from __future__ import annotations

import heapq
import threading
import time
from typing import Callable

from ._wire import CLOCK_WINDOW

__all__ = ("ReplayGuard",)


class ReplayGuard:
    """Admit each (timestamp, nonce) once while the timestamp is fresh. Thread-safe.

    Costs at most ``capacity`` entries of about 200 bytes each (a 16-byte
    nonce, a float, a heap slot and a set slot).
    """

    def __init__(
        self,
        window: float = CLOCK_WINDOW,
        capacity: int = 65536,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= 0 or capacity < 1:
            raise ValueError("a ReplayGuard needs a positive window and capacity")
        self.window = window
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._by_time: list[tuple[float, bytes]] = []
        # Everything signed at or before this may have been forgotten early.
        self._floor = float("-inf")

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)

    def admit(self, timestamp: float, nonce: bytes) -> str | None:
        """Record ``nonce`` and return None if the request is fresh, else why it is refused."""
        now = self._clock()
        if abs(now - timestamp) > self.window:
            return "timestamp outside the server's clock window"
        with self._lock:
            horizon = now - self.window
            while self._by_time and self._by_time[0][0] < horizon:
                self._seen.discard(heapq.heappop(self._by_time)[1])
            if nonce in self._seen or timestamp <= self._floor:
                return "replayed request"
            if len(self._seen) >= self.capacity:
                if timestamp <= self._by_time[0][0]:
                    return "signed before every request the server remembers"
                forgotten, old = heapq.heappop(self._by_time)
                self._seen.discard(old)
                self._floor = max(self._floor, forgotten)
            self._seen.add(nonce)
            heapq.heappush(self._by_time, (timestamp, nonce))
        return None
