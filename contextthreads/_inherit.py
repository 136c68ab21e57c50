"""Whether a plain ``threading.Thread`` copies its starter's context.

The executor needs this to start its workers in an empty context: a worker that
inherited the context of the ``submit()`` that created it would keep those
values alive for as long as it idles.
"""

from __future__ import annotations

import sys

# Set by install(); read on every thread start, so keep it a plain module global.
patched = False


def threads_inherit_context() -> bool:
    """Return True if a plain ``threading.Thread`` would start in a copy of our context."""
    return patched or bool(getattr(sys.flags, "thread_inherit_context", False))
