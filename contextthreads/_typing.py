"""Type variables shared by the public modules.

``ParamSpec`` is in ``typing`` from 3.10; on 3.9 it exists only for the type
checker, which is enough because every module postpones its annotations.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeVar

T = TypeVar("T")

if sys.version_info >= (3, 10):
    from typing import ParamSpec

    P = ParamSpec("P")
elif TYPE_CHECKING:
    from typing_extensions import ParamSpec

    P = ParamSpec("P")
