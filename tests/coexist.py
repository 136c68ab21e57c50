"""contextthreads beside Sentry and OpenTelemetry, in a fresh process of its own.

Both libraries patch ``threading`` and ``concurrent.futures`` for the life of
the process (Sentry never unpatches), so every run here is a fresh
interpreter started by ``tests/test_coexistence.py``:

``python tests/coexist.py mechanisms CONFIG``
    Set up ``CONFIG`` (``sentry``, ``otel``, optionally with ``install-first``
    or ``install-after``, joined by ``+``), then hand two tasks, one after the
    other, to every mechanism, and print a JSON object mapping each mechanism
    to the list of what went wrong (empty when it behaved).
``python tests/coexist.py orders SETUP REMOVAL``
    Run the set-up steps (``install``, ``sentry``, ``otel``) in the order
    given, check the main mechanisms, run the removal steps in the order
    given, and print a JSON object with the problems found and the warnings
    contextthreads logged.

Sentry sends to an in-memory transport, OpenTelemetry exports to an
``InMemorySpanExporter``: no network. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import stdlib_state
from bounds import WAIT

import contextthreads
from contextthreads._patching import is_proxy

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("coexist_var", default="unset")
PRISTINE = stdlib_state.snapshot()

Work = Callable[[], str]
Handoff = Callable[[Work], str]


class Libraries:
    """Sentry and OpenTelemetry as set up in this process, each with an in-memory sink."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.exporter: Any = None
        self.tracer: Any = None
        self.instrumentor: Any = None
        self.sentry_on = False

    def init_sentry(self) -> None:
        import sentry_sdk
        from sentry_sdk.transport import Transport

        events = self.events

        class MemoryTransport(Transport):
            def capture_envelope(self, envelope: Any) -> None:
                event = envelope.get_event()
                if event is not None:
                    events.append(event)

        # The integration is on by default; nothing is ever sent anywhere.
        sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", transport=MemoryTransport())
        self.sentry_on = True

    def close_sentry(self) -> None:
        import sentry_sdk

        # Sentry never takes its wrappers out; a client without the integration
        # makes them pass every call through.
        sentry_sdk.init(dsn=None, default_integrations=False)
        self.sentry_on = False

    def instrument_otel(self) -> None:
        from opentelemetry import trace
        from opentelemetry.instrumentation.threading import ThreadingInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        if self.tracer is None:
            self.exporter = InMemorySpanExporter()
            provider = TracerProvider()
            provider.add_span_processor(SimpleSpanProcessor(self.exporter))
            trace.set_tracer_provider(provider)
            self.tracer = trace.get_tracer(__name__)
        self.instrumentor = ThreadingInstrumentor()
        self.instrumentor.instrument()

    def uninstrument_otel(self) -> None:
        self.instrumentor.uninstrument()
        self.instrumentor = None

    def spans(self) -> dict[str, Any]:
        return {span.name: span for span in self.exporter.get_finished_spans()}


LIBS = Libraries()


# --------------------------------------------------------------------------
# Hand-offs


def _in_thread(cls: type[threading.Thread]) -> Handoff:
    def handoff(work: Work) -> str:
        box: list[str] = []
        thread = cls(target=lambda: box.append(work()))
        thread.start()
        thread.join(WAIT)
        assert not thread.is_alive(), "the thread did not finish"
        return box[0]

    return handoff


def _in_timer(cls: type[threading.Timer]) -> Handoff:
    def handoff(work: Work) -> str:
        box: list[str] = []
        timer = cls(0, lambda: box.append(work()))
        timer.start()
        timer.join(WAIT)
        assert not timer.is_alive(), "the timer did not finish"
        return box[0]

    return handoff


class _Pools:
    """One pool of each kind, of one worker, so that both tasks share it; made on first use."""

    def __init__(self) -> None:
        self._made: dict[str, ThreadPoolExecutor] = {}

    def get(self, kind: str) -> ThreadPoolExecutor:
        if kind not in self._made:
            cls = contextthreads.ThreadPoolExecutor if kind == "ours" else ThreadPoolExecutor
            self._made[kind] = cls(max_workers=1)
        return self._made[kind]


POOLS = _Pools()


def _submit(kind: str) -> Handoff:
    return lambda work: POOLS.get(kind).submit(work).result(timeout=WAIT)


def _map(kind: str, **kwargs: Any) -> Handoff:
    def handoff(work: Work) -> str:
        [result] = POOLS.get(kind).map(lambda _: work(), [None], timeout=WAIT, **kwargs)
        return result

    return handoff


def _bound_in_thread(work: Work) -> str:
    return _in_thread(threading.Thread)(contextthreads.bind(work))


def _forking_in_bound(work: Work) -> str:
    import sentry_sdk

    def forked() -> str:
        # The documented remedy: give the bound call a Sentry scope of its own.
        with sentry_sdk.isolation_scope():
            return work()

    return _bound_in_thread(forked)


def _asyncio(call: Callable[[asyncio.AbstractEventLoop, Work], Any]) -> Handoff:
    def handoff(work: Work) -> str:
        async def main() -> str:
            return await call(asyncio.get_running_loop(), work)  # type: ignore[no-any-return]

        # The loop's task runs in a copy of this context, with Sentry's scope.
        return asyncio.run(asyncio.wait_for(main(), WAIT))

    return handoff


async def _default_executor_after_use_context_executor(
    loop: asyncio.AbstractEventLoop, work: Work
) -> str:
    contextthreads.use_context_executor(loop, max_workers=1)
    return await loop.run_in_executor(None, work)


def _run_in_executor_into(kind: str) -> Callable[..., Any]:
    async def call(loop: asyncio.AbstractEventLoop, work: Work) -> str:
        return await contextthreads.run_in_executor(POOLS.get(kind), work)

    return call


async def _default_executor(loop: asyncio.AbstractEventLoop, work: Work) -> str:
    return await loop.run_in_executor(None, work)


def mechanisms(installed: bool) -> dict[str, Handoff]:
    """Every hand-off to check: our own, and the stdlib's too under install()."""
    found: dict[str, Handoff] = {
        "ContextThread": _in_thread(contextthreads.ContextThread),
        "ContextTimer": _in_timer(contextthreads.ContextTimer),
        "ContextThreadPoolExecutor.submit": _submit("ours"),
        "ContextThreadPoolExecutor.map": _map("ours"),
        "bind": _bound_in_thread,
        "bind with sentry_sdk.isolation_scope()": _forking_in_bound,
        "use_context_executor": _asyncio(_default_executor_after_use_context_executor),
        "run_in_executor(ContextThreadPoolExecutor)": _asyncio(_run_in_executor_into("ours")),
        "run_in_executor(ThreadPoolExecutor)": _asyncio(_run_in_executor_into("plain")),
    }
    if sys.version_info >= (3, 14):
        found["ContextThreadPoolExecutor.map(buffersize=1)"] = _map("ours", buffersize=1)
    if installed:
        found["install(): Thread"] = _in_thread(threading.Thread)
        found["install(): Timer"] = _in_timer(threading.Timer)
        found["install(): ThreadPoolExecutor.submit"] = _submit("plain")
        found["install(): ThreadPoolExecutor.map"] = _map("plain")
        found["install(): loop.run_in_executor(None)"] = _asyncio(_default_executor)
        if sys.version_info >= (3, 14):
            found["install(): ThreadPoolExecutor.map(buffersize=1)"] = _map("plain", buffersize=1)
    return found


# --------------------------------------------------------------------------
# One probe: two tasks handed over in turn, from a scope of their own


def _task(name: str, label: str) -> Work:
    def task() -> str:
        seen = VAR.get()
        VAR.set(f"written by {label}")
        if LIBS.tracer is not None:
            with LIBS.tracer.start_as_current_span(f"{name}:{label}"):
                pass
        if LIBS.sentry_on:
            import sentry_sdk

            sentry_sdk.set_tag(f"set_in_{label}", "yes")
            sentry_sdk.capture_message(f"{name}:{label}")
        return seen

    return task


def _submitter(name: str, handoff: Handoff) -> dict[str, Any]:
    import contextlib

    VAR.set("before")
    with contextlib.ExitStack() as stack:
        if LIBS.sentry_on:
            import sentry_sdk

            stack.enter_context(sentry_sdk.isolation_scope())
            sentry_sdk.set_tag("set_before", name)
        starter = None
        if LIBS.tracer is not None:
            starter = stack.enter_context(LIBS.tracer.start_as_current_span(f"{name}:starter"))
        seen = [handoff(_task(name, "A")), handoff(_task(name, "B"))]
        if LIBS.sentry_on:
            sentry_sdk.capture_message(f"{name}:after")
        return {"seen": seen, "after": VAR.get(), "starter": starter}


def probe(name: str, handoff: Handoff) -> list[str]:
    """Return what went wrong when ``handoff`` ran two tasks in turn, or nothing."""
    try:
        # Each probe from a context of its own: no probe sees another's values.
        outcome = contextvars.Context().run(_submitter, name, handoff)
    except BaseException as exc:
        return [f"raised {type(exc).__name__}: {exc}"]
    problems = []
    if outcome["seen"] != ["before", "before"]:
        problems.append(f"the tasks saw {outcome['seen']} of the ContextVar, not the starter's")
    if outcome["after"] != "before":
        problems.append(f"the starter's ContextVar became {outcome['after']!r}")
    if LIBS.sentry_on:
        problems += _sentry_problems(name)
    if LIBS.tracer is not None:
        problems += _span_problems(name, outcome["starter"])
    return problems


def _sentry_problems(name: str) -> list[str]:
    tags = {
        event.get("message"): dict(event.get("tags") or {})
        for event in LIBS.events
        if str(event.get("message", "")).startswith(f"{name}:")
    }
    problems = []
    for label in ("A", "B"):
        got = tags.get(f"{name}:{label}")
        if got is None:
            problems.append(f"Sentry got no event from task {label}")
        elif got.get("set_before") != name:
            problems.append(f"task {label}'s event lacks the starter's tag: {got}")
    if "set_in_A" in tags.get(f"{name}:B", {}):
        problems.append("a tag set in task A reached task B's event")
    leaked = sorted(key for key in tags.get(f"{name}:after", {}) if key.startswith("set_in_"))
    if leaked:
        problems.append(f"tags set in the tasks reached the starter's scope: {leaked}")
    return problems


def _span_problems(name: str, starter: Any) -> list[str]:
    spans = LIBS.spans()
    expected = starter.get_span_context().span_id
    problems = []
    for label in ("A", "B"):
        span = spans.get(f"{name}:{label}")
        if span is None:
            problems.append(f"no span from task {label}")
        elif span.parent is None:
            problems.append(f"task {label}'s span has no parent: a new trace")
        elif span.parent.span_id != expected:
            sibling = spans.get(f"{name}:A")
            whose = (
                "task A's" if sibling and span.parent.span_id == sibling.context.span_id else "a"
            )
            problems.append(f"task {label}'s span is a child of {whose} span, not the starter's")
    return problems


# --------------------------------------------------------------------------
# Set-up and removal steps, in any order


class Warnings(logging.Handler):
    """Collect what contextthreads logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


SETUP: dict[str, Callable[[], None]] = {
    "install": contextthreads.install,
    "sentry": LIBS.init_sentry,
    "otel": LIBS.instrument_otel,
}
REMOVAL: dict[str, Callable[[], None]] = {
    "uninstall": contextthreads.uninstall,
    "sentry": LIBS.close_sentry,
    "otel": LIBS.uninstrument_otel,
}


def _label(value: Any) -> str:
    """Name what sits in a class or a wrapper: the stdlib's, ours, or whose."""
    if is_proxy(value):
        return type(value).__qualname__  # which forwards __globals__ and the rest
    module = getattr(value, "__globals__", {}).get("__name__", "")
    if module in ("threading", "concurrent.futures.thread", "concurrent.futures._base"):
        return f"stdlib {value.__qualname__}"
    if module.startswith("contextthreads") or type(value).__module__.startswith("contextthreads"):
        return "contextthreads"
    code = getattr(value, "__code__", None)
    if code is not None:
        return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"
    return type(value).__qualname__


def signature() -> dict[str, list[str]]:
    """What each patched attribute is now, outermost first, down its chain of wrappers.

    Only attributes that are not the originals. A patch of ours an uninstall
    left behind (and warned about) is not listed, so a run with contextthreads
    can be compared with the same run without it.
    """
    from contextthreads import _install

    left = [patch.replacement for patch in _install._leftovers.values()]
    found = {}
    now = stdlib_state.snapshot()
    for key in stdlib_state.differences(PRISTINE, now):
        name = key.split(":")[0]
        chain, value = [], now.get(name, "<absent>")
        for _ in range(20):
            if not any(value is patch for patch in left):
                chain.append(_label(value))
            value = getattr(value, "__wrapped__", None)
            if value is None:
                break
        found[name] = chain
    return found


def _final_problems(warnings: list[str]) -> list[str]:
    """What is wrong once everything is removed, beyond what the other libraries leave."""
    from contextthreads import _install

    problems = []
    if _install._applied or contextthreads.is_installed():
        problems.append("contextthreads still counts itself installed")
    if len(warnings) != len(_install._leftovers):
        problems.append(f"{len(_install._leftovers)} patches left behind, {len(warnings)} warnings")
    # Behaviour: the stdlib's own, with nothing carried into a warm worker.
    with ThreadPoolExecutor(max_workers=1) as pool:
        contextvars.Context().run(lambda: pool.submit(lambda: None).result(timeout=WAIT))
        VAR.set("after removal")
        seen = pool.submit(VAR.get).result(timeout=WAIT)
        if seen != "unset":
            problems.append(f"after removal a pool task saw {seen!r}")
        if LIBS.tracer is not None:
            with LIBS.tracer.start_as_current_span("after:starter"):
                pool.submit(_task("after", "A")).result(timeout=WAIT)
            if LIBS.spans()["after:A"].parent is not None:
                problems.append("after removal a pool task's span is still the starter's child")
    return problems


#: What the order runs check under install(), each beside the class of ours it matches.
UNDER_INSTALL = {
    "install(): Thread": "ContextThread",
    "install(): Timer": "ContextTimer",
    "install(): ThreadPoolExecutor.submit": "ContextThreadPoolExecutor.submit",
}


def run_orders(setup: list[str], removal: list[str]) -> dict[str, Any]:
    warnings = Warnings()
    logging.getLogger("contextthreads").addHandler(warnings)
    problems: dict[str, list[str]] = {}
    for step in setup:
        SETUP[step]()
    every = mechanisms("install" in setup)
    checked = list(UNDER_INSTALL.values())
    if "install" in setup:
        checked += UNDER_INSTALL
    for name in checked:
        problems[name] = probe(name, every[name])
    for step in removal:
        REMOVAL[step]()
    problems["after removal"] = _final_problems(warnings.messages)
    return {"problems": problems, "warnings": warnings.messages, "signature": signature()}


def run_mechanisms(config: str) -> dict[str, list[str]]:
    parts = config.split("+")
    if "install-first" in parts:
        contextthreads.install()
    if "sentry" in parts:
        LIBS.init_sentry()
    if "otel" in parts:
        LIBS.instrument_otel()
    if "install-after" in parts:
        contextthreads.install()
    installed = contextthreads.is_installed()
    return {name: probe(name, handoff) for name, handoff in mechanisms(installed).items()}


def main(argv: list[str]) -> None:
    if argv[0] == "mechanisms":
        result: Any = run_mechanisms(argv[1])
    else:
        result = run_orders(
            [s for s in argv[1].split(",") if s], [s for s in argv[2].split(",") if s]
        )
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
