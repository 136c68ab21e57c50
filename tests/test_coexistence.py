"""contextthreads beside the real Sentry SDK and OpenTelemetry's threading instrumentation.

Both libraries patch the stdlib for the life of a process, so each
configuration runs in a fresh interpreter (``tests/coexist.py``), bounded in
time. Sentry captures into memory and OpenTelemetry exports into an
``InMemorySpanExporter``: nothing leaves the machine.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import pytest

sentry_sdk = pytest.importorskip("sentry_sdk", reason="sentry-sdk does not install here")
pytest.importorskip(
    "opentelemetry.instrumentation.threading",
    reason="opentelemetry-instrumentation-threading does not install here",
)

import coexist  # noqa: E402

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "coexist.py"
TIMEOUT = 120

#: Hand-offs that enter a context of their own inside whatever wraps them.
#: Sentry's wrapper forks the starter's scope around the work; these then
#: enter a copy holding the starter's scope object itself, shared by
#: reference, as docs/howto/instrumentation.md says.
ENTER_THEIR_OWN_COPY = {"bind", "run_in_executor(ThreadPoolExecutor)"}


def driver_env() -> dict[str, str]:
    """Return the environment for a run of ``coexist.py``: this one, with tests/ on the path.

    Call it from pytest's own thread, not a worker's: pytest sets and deletes variables of
    ``os.environ`` around every test, and copying it meanwhile can fail (it did on PyPy).
    """
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def run_driver(*args: str, env: dict[str, str]) -> Any:
    """Run ``coexist.py`` with ``args`` in a fresh interpreter; return what it printed."""
    proc = subprocess.run(
        [sys.executable, str(DRIVER), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=HERE,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


Args = tuple[str, ...]


def _without_us(setup: tuple[str, ...], removal: tuple[str, ...]) -> Args:
    """The driver's arguments for ``setup`` and ``removal`` with contextthreads' steps left out."""
    kept = [step for step in setup if step != "install"]
    removed = [step for step in removal if step != "uninstall"]
    return ("orders", ",".join(kept), ",".join(removed))


def _runs_for(item: pytest.Item) -> list[Args]:
    """The driver runs a collected test of this module reads."""
    params = getattr(item, "callspec", None)
    if params is None:
        return []
    p = params.params
    if "config" in p:
        return [("mechanisms", p["config"])]
    if "setup" in p:
        setup, removal = p["setup"], p["removal"]
        return [("orders", ",".join(setup), ",".join(removal)), _without_us(setup, removal)]
    return []


class Drivers:
    """Runs of ``coexist.py``, each once, started ahead two at a time.

    Starting fresh interpreters with Sentry and OpenTelemetry is most of this
    module's time, and each run is a process of its own that shares nothing
    with the others, so two run at once on this two-core machine.
    """

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self._pool = pool
        self._runs: dict[Args, Future[Any]] = {}

    def start(self, args: Args) -> None:
        """Start the run with ``args`` in the background, unless it was started before."""
        if args not in self._runs:
            self._runs[args] = self._pool.submit(run_driver, *args, env=driver_env())

    def result(self, *args: str) -> Any:
        """Return what the run with ``args`` printed, starting it now if nobody did."""
        self.start(args)
        return self._runs[args].result(timeout=2 * TIMEOUT)


@pytest.fixture(scope="module")
def drivers(request: pytest.FixtureRequest) -> Iterator[Drivers]:
    """Every driver run this module's selected tests read, started ahead, two at a time."""
    with ThreadPoolExecutor(2) as pool:
        found = Drivers(pool)
        for item in request.session.items:
            if isinstance(item, pytest.Function) and item.module is request.module:
                for args in _runs_for(item):
                    found.start(args)
        try:
            yield found
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


CONFIGS = [
    "sentry",
    "sentry+install-first",
    "sentry+install-after",
    "otel",
    "otel+install-first",
    "otel+install-after",
]


def _cases() -> list[tuple[str, str]]:
    return [
        (config, name)
        for config in CONFIGS
        for name in coexist.mechanisms(installed="install" in config)
    ]


@pytest.mark.parametrize(("config", "mechanism"), _cases())
def test_mechanism_carries_and_isolates(config: str, mechanism: str, drivers: Drivers) -> None:
    """Values, tags and spans reach the work; what the work adds reaches no starter nor sibling.

    Two tasks go through the mechanism in turn from one starter, which set a
    ContextVar, a Sentry tag and an OpenTelemetry span first: both tasks see
    all three (their spans are children of the starter's), the tag task A sets
    reaches neither task B's event nor the starter's next one, and B's span is
    never A's child. With Sentry, the hand-offs that enter their own copy
    inside Sentry's wrapper share the starter's scope instead: documented, and
    pinned here, with the remedy beside it.
    """
    problems = drivers.result("mechanisms", config)[mechanism]
    if config.startswith("sentry") and mechanism in ENTER_THEIR_OWN_COPY:
        assert problems == [
            "a tag set in task A reached task B's event",
            "tags set in the tasks reached the starter's scope: ['set_in_A', 'set_in_B']",
        ]
    else:
        assert problems == []


SETUPS = list(itertools.permutations(["install", "sentry", "otel"]))
REMOVALS = list(itertools.permutations(["uninstall", "sentry", "otel"]))


@pytest.mark.slow
@pytest.mark.parametrize("removal", REMOVALS, ids=",".join)
@pytest.mark.parametrize("setup", SETUPS, ids=",".join)
def test_every_order_of_setup_and_removal(
    setup: tuple[str, ...],
    removal: tuple[str, ...],
    drivers: Drivers,
) -> None:
    """install(), sentry_sdk.init() and instrument() in any order, then removed in any order.

    While all three are set up, plain and our own threads, timers and pool
    tasks carry values, tags and spans and isolate what the work adds. Once
    all are removed, the stdlib classes hold exactly what the same run without
    contextthreads leaves (Sentry never takes its wrappers out, and
    OpenTelemetry leaves a bound copy of its own on Timer), and behave the
    same; a patch of ours that Sentry's wrapper captured stays inside it,
    passing calls through, with the documented warning. Each run is a fresh
    process.
    """
    got = drivers.result("orders", ",".join(setup), ",".join(removal))
    control = drivers.result(*_without_us(setup, removal))
    # What Sentry and OpenTelemetry do to each other, whatever we do: with
    # OpenTelemetry first, Timer keeps its own copy of start(), which Sentry's
    # wrapper never reaches, and its wrappers end up inside Sentry's, beyond
    # the reach of its uninstrument(). docs/howto/instrumentation.md says so.
    if setup.index("otel") < setup.index("sentry"):
        assert {check: found for check, found in control["problems"].items() if found} == {
            "ContextTimer": [
                "a tag set in task A reached task B's event",
                "tags set in the tasks reached the starter's scope: ['set_in_A', 'set_in_B']",
            ],
            "after removal": ["after removal a pool task's span is still the starter's child"],
        }
    else:
        assert not any(control["problems"].values()), control["problems"]
    assert got["signature"] == control["signature"]
    # What the libraries do to each other shows in the run without us too.
    baseline = control["problems"]
    assert got["problems"] == {
        check: baseline[coexist.UNDER_INSTALL.get(check, check)] for check in got["problems"]
    }
    sentry_wraps_ours = setup.index("sentry") > setup.index("install")
    assert len(got["warnings"]) == (1 if sentry_wraps_ours else 0), got["warnings"]
    for warning in got["warnings"]:
        assert "threading.Thread.start was replaced after contextthreads.install()" in warning
        assert "sentry_start" in warning
