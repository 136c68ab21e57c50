"""Fixtures of the fluster tests: one LocalCluster per module, a task gate, log watching.

Worker processes are the expensive part, so clusters are shared per module.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

import pytest

from contextthreads.fluster import ActorServer, LocalCluster

from .support import SECRET, Echo, Gate, LogWatcher


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A running LocalCluster shared by the tests of one module."""
    with LocalCluster() as running:
        yield running


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A fresh Gate, closed after the test (which unblocks any task still waiting)."""
    opened = Gate()
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def watch_log() -> Iterator[Callable[[str], LogWatcher]]:
    """Yield a function that starts watching the fluster logger for a text; undo at teardown."""
    logger = logging.getLogger("contextthreads.fluster")
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    installed: list[LogWatcher] = []

    def watch(text: str) -> LogWatcher:
        watcher = LogWatcher(text)
        logger.addHandler(watcher)
        installed.append(watcher)
        return watcher

    try:
        yield watch
    finally:
        for watcher in installed:
            logger.removeHandler(watcher)
        logger.setLevel(saved)


@pytest.fixture
def echo_server() -> Iterator[tuple[ActorServer, Echo]]:
    """An ActorServer hosting an Echo under the name "echoer"."""
    echo = Echo()
    with ActorServer(SECRET) as server:
        server.register("echoer", echo)
        yield server, echo
