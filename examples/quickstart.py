"""A request id in a ContextVar, stamped on every log line, across threads.

Run it: ``python examples/quickstart.py``. Each mechanism logs one line from a
thread while handling request "req-42": first through the stdlib, where the id
is lost, then through contextthreads, where it follows the work.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
import sys
import threading

import contextthreads

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    """Stamp each record with the request id of the context it was logged in."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


log = logging.getLogger("quickstart")


def work(mechanism: str) -> str:
    log.info("handled in %s", mechanism)
    return request_id.get()


def run_all(
    threading_mod: object, executor_cls: type[concurrent.futures.ThreadPoolExecutor]
) -> list[str]:
    """Handle one request through a Thread, a Timer and a pool; return the ids each saw."""
    seen: list[str] = []
    thread_cls = threading_mod.Thread  # type: ignore[attr-defined]
    timer_cls = threading_mod.Timer  # type: ignore[attr-defined]

    t = thread_cls(target=lambda: seen.append(work("Thread")))
    t.start()
    t.join(5)

    timer = timer_cls(0.01, lambda: seen.append(work("Timer")))
    timer.start()
    timer.join(5)

    with executor_cls(max_workers=2) as pool:
        seen.append(pool.submit(work, "ThreadPoolExecutor.submit").result(timeout=5))
        seen.extend(pool.map(work, ["ThreadPoolExecutor.map"], timeout=5))
    return seen


def main() -> int:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("[request_id=%(request_id)s] %(threadName)s: %(message)s")
    )
    log.addHandler(handler)
    log.setLevel(logging.INFO)

    request_id.set("req-42")
    log.info("request received")

    print("\n-- with the stdlib: the request id is lost in threads --")
    lost = run_all(threading, concurrent.futures.ThreadPoolExecutor)

    print("\n-- with contextthreads: the request id follows the work --")
    kept = run_all(contextthreads, contextthreads.ThreadPoolExecutor)

    # bind(): capture now, call later from any thread (here, a plain stdlib thread).
    callback = contextthreads.bind(work)
    request_id.set("req-43")
    t = threading.Thread(target=callback, args=("bind() from a plain threading.Thread",))
    t.start()
    t.join(5)
    kept.append(contextthreads.bind(request_id.get)())

    print(f"\nstdlib saw:         {lost}")
    print(f"contextthreads saw: {kept}")
    inherits = bool(getattr(sys.flags, "thread_inherit_context", False))
    if inherits:
        # 3.14 with -X thread_inherit_context=1: plain Threads inherit, and the
        # stdlib pool's tasks see the context of whichever submit() happened to
        # create their worker thread, not their own submitter's.
        print("(thread_inherit_context=1: the stdlib inherits at thread creation only)")
    ok = kept == ["req-42"] * 4 + ["req-43"] and (inherits or lost == ["-"] * 4)
    print("OK" if ok else "UNEXPECTED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
