"""Sphinx configuration: MyST Markdown pages, and a reference generated from the docstrings.

Build: ``nox -s docs``, or ``sphinx-build -W --keep-going -n -b html docs docs/_build/html``.
Two checks of our own run in every build, and warn (an error under ``-W``):

- every name in each public package's ``__all__`` is documented somewhere in the site;
- a type in a signature, which autodoc names by its private module
  (``contextthreads.fluster._pool_types.PoolStatus``), links to the public name
  it is documented under (``contextthreads.fluster.PoolStatus``), and one that
  is documented under no public name is reported like any missing reference.
"""

from __future__ import annotations

import importlib
from typing import Any

from sphinx.util import logging

project = "contextthreads"
author = "contextthreads developers"
copyright = "contextthreads developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "contextthreads"
# Dates and build paths stay out of the pages: two builds of one tree are the same.
html_last_updated_fmt = None

# Google-style docstrings (Args:/Returns:/Raises:), read by napoleon.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

# Anchors for headings down to ###, so [text](page.md#a-heading) is checked too.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# With -n every cross-reference must resolve. References to the standard library
# and third-party packages cannot (intersphinx would fetch their inventories from
# the network, which the build must not need), nor can the typing parameters of
# signatures; everything named contextthreads must.
nitpicky = True
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(_thread|_typeshed|asyncio|collections|concurrent|contextlib|contextvars|enum|"
        r"functools|hypothesis|io|libcst|logging|multiprocessing|os|pathlib|queue|ray|socket|ssl|"
        r"subprocess|threading|types|typing|typing_extensions)(\..*)?",
    ),
    # ParamSpec and TypeVar names in signatures (_Service: start()'s "returns self"), and
    # concurrent.futures names imported bare.
    (
        r"py:.*",
        r"(P|T|R|P\.args|P\.kwargs|contextthreads\.fluster\._http\._Service|Future|Executor)",
    ),
    # The pool's own state and worker records, which it hands to the dispatcher it makes
    # (WorkerPool.dispatcher_class): internals a dispatcher subclass passes on, not API.
    (r"py:class", r"(PoolState|Worker)"),
    (
        r"py:.*",
        r"(None|bool|bytes|dict|float|int|list|object|set|str|tuple|type|Exception|"
        r"BaseException|Callable|Iterable|Iterator|Mapping|Sequence|Collection|Any)",
    ),
]

PUBLIC_PACKAGES = (
    "contextthreads",
    "contextthreads.testing",
    "contextthreads.fluster",
    "contextthreads.migrate",
)

log = logging.getLogger("contextthreads.docs")


def public_names() -> dict[str, str]:
    """Map each public name to itself, and each object's own module path to its public name."""
    names: dict[str, str] = {}
    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            public = f"{package}.{name}"
            names[public] = public
            value = getattr(module, name)
            own = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
            if isinstance(own[0], str) and isinstance(own[1], str):
                names.setdefault(f"{own[0]}.{own[1]}", public)
    return names


_PUBLIC = public_names()


def _public_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    if node.get("refdomain") != "py":
        return None
    public = _PUBLIC.get(node["reftarget"])
    if public is None or public == node["reftarget"]:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], public, node, contnode
    )


def _check_reference_covers_all(app: Any, env: Any) -> None:
    documented = env.get_domain("py").objects
    for package in PUBLIC_PACKAGES:
        for name in importlib.import_module(package).__all__:
            if f"{package}.{name}" not in documented:
                log.warning(
                    "%s.%s is in %s.__all__ but not in the reference", package, name, package
                )


def _factory_defaults(
    app: Any, what: str, name: str, obj: Any, options: Any, signature: str | None, ret: str | None
) -> tuple[str | None, str | None] | None:
    # A dataclass field made by default_factory has "<factory>" for its default,
    # which is not Python: Sphinx's signature parser gives up on the whole line
    # and splits it at every comma. "..." is the stubs' spelling of "a default".
    if signature and "<factory>" in signature:
        return signature.replace("<factory>", "..."), ret
    return None


def setup(app: Any) -> dict[str, Any]:
    app.connect("autodoc-process-signature", _factory_defaults)
    app.connect("missing-reference", _public_reference)
    app.connect("env-check-consistency", _check_reference_covers_all)
    return {"parallel_read_safe": True}
