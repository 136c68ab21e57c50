"""Every script in examples/ runs to completion and exits 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script: Path) -> None:
    """The example exits 0 within two minutes and prints no traceback."""
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


def test_quickstart_shows_loss_and_fix() -> None:
    """The quickstart shows the request id lost by the stdlib and kept by contextthreads.

    Under 3.14's thread_inherit_context=1 plain threads inherit, so only the kept half is pinned.
    """
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES[0].parent / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    if not getattr(sys.flags, "thread_inherit_context", False):
        assert "[request_id=-] " in proc.stdout
    assert "[request_id=req-42] " in proc.stdout
    assert proc.stdout.rstrip().endswith("OK")


def test_public_api_is_exported() -> None:
    """Every name in contextthreads.__all__ resolves, the asyncio helpers included."""
    import contextthreads

    for name in contextthreads.__all__:
        assert getattr(contextthreads, name) is not None
    assert contextthreads.Thread is contextthreads.ContextThread
    assert contextthreads.Timer is contextthreads.ContextTimer
    assert contextthreads.ThreadPoolExecutor is contextthreads.ContextThreadPoolExecutor


def test_importing_threads_does_not_load_the_pool_or_asyncio() -> None:
    """`import contextthreads` loads neither concurrent.futures, logging nor asyncio until used."""
    code = (
        "import sys, contextthreads\n"
        "heavy = {'concurrent.futures', 'logging', 'asyncio'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "contextthreads.ThreadPoolExecutor\n"
        "assert 'concurrent.futures' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
