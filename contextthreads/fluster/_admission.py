"""Admission: how many connections a server lets wait before they have proved themselves.

A connection holds a slot from when it is accepted until its head's
signature checks (or its thread ends). With every slot taken, a new
connection drops the oldest waiting one, whose reads then end at once, and
takes its slot once that thread lets go. So an attacker must open
connections faster than honest clients send their heads (microseconds apart)
to shut them out, and the threads and buffers of unproved connections never
number more than ``capacity``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

__all__ = ("Admission",)

logger = logging.getLogger("contextthreads.fluster")


class Admission:
    """``capacity`` slots for connections that have not proved themselves yet. Thread-safe."""

    #: The longest ``admit()`` waits for a dropped connection's thread to let go.
    wait = 1.0

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        # Connections holding a slot, oldest first; True once dropped.
        self._held: dict[socket.socket, bool] = {}
        self._changed = threading.Condition(threading.Lock())

    def __len__(self) -> int:
        with self._changed:
            return len(self._held)

    def admit(self, sock: socket.socket) -> bool:
        """Give ``sock`` a slot, dropping the oldest waiting connection if none is free.

        Returns False if no slot came free within ``wait`` seconds.
        """
        victim = None
        with self._changed:
            if len(self._held) >= self.capacity:
                victim = next((held for held, gone in self._held.items() if not gone), None)
                if victim is not None:
                    self._held[victim] = True
        if victim is not None:
            logger.debug("too many connections without a request; dropping the oldest")
            # The plain socket's call, even under TLS, whose own would write an alert and
            # race the thread reading it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(victim, socket.SHUT_RDWR)
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._held) < self.capacity, self.wait):
                return False
            self._held[sock] = False
            return True

    def proved(self, sock: socket.socket) -> bool:
        """Free ``sock``'s slot: it proved itself. Return False if it had been dropped."""
        with self._changed:
            dropped = self._held.pop(sock, True)
            self._changed.notify_all()
        return not dropped

    def release(self, sock: socket.socket) -> None:
        """Free ``sock``'s slot, if it holds one: its connection is over."""
        with self._changed:
            if self._held.pop(sock, None) is not None:
                self._changed.notify_all()
