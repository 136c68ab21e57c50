"""Fixtures for the fluster tests: one LocalCluster per module, and a gate tasks report to.

Worker processes dominate the cost of these tests, so clusters (cheap) and,
where tests allow, pools (not cheap) are shared per module.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator

import pytest

pytest.importorskip("cloudpickle")

from fluster_support import Gate, LogWatcher

from contextthreads.fluster import LocalCluster


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
