"""What install() and the libraries beside it patch: a snapshot of those stdlib classes.

Imported by tests and by the driver scripts they run in fresh processes. Two
snapshots are equal when every attribute of every class is the very same
object: the stdlib functions are the originals.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import thread as stdlib_thread

CLASSES: tuple[type, ...] = (
    threading.Thread,
    threading.Timer,
    ThreadPoolExecutor,
    stdlib_thread._WorkItem,
)
if hasattr(stdlib_thread, "WorkerContext"):
    CLASSES += (stdlib_thread.WorkerContext,)

Snapshot = dict[str, object]


def snapshot() -> Snapshot:
    """Return every attribute each class holds itself, by ``Class.name``."""
    return {
        f"{cls.__qualname__}.{name}": value for cls in CLASSES for name, value in vars(cls).items()
    }


def differences(before: Snapshot, after: Snapshot) -> list[str]:
    """Return a line for each attribute added, removed or replaced between two snapshots."""
    lines = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key, "<absent>"), after.get(key, "<absent>")
        if old is not new:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines


def restore(saved: Snapshot) -> None:
    """Put every class back as ``saved`` had it, whatever a failed test left."""
    by_name = {cls.__qualname__: cls for cls in CLASSES}
    for key in differences(saved, snapshot()):
        qualname, name = key.split(":")[0].split(".", 1)
        cls = by_name[qualname]
        if f"{qualname}.{name}" in saved:
            setattr(cls, name, saved[f"{qualname}.{name}"])
        else:
            delattr(cls, name)
