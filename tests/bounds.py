"""The bounds on every wait in the tests, kept in one place.

A correct run never comes near either: they only decide how long a broken one
takes to fail. (Timeouts of whole child test suites are the runners' own.)
"""

from __future__ import annotations

#: A hand-off between threads of one process: an Event, a Barrier, a join, a future's result.
WAIT = 5.0
#: A wait that includes starting an interpreter or a worker process, a round trip over a
#: socket, or other waits nested inside it: two busy cores start interpreters slowly.
LONG_WAIT = 30.0
