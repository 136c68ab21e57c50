"""The documentation's promises: its examples run, its reference is whole, its links land.

Every fenced ``python`` block of ``README.md`` and ``docs/**/*.md`` runs as a script of its own
(``python block.py``), in a fresh temporary directory, in a subprocess with a time limit, and must
exit 0. Blocks of other languages (``sh``, ``text``) are not run. A block runs as it stands: it
imports what it uses and defines what it needs, so a reader can paste it into a file.

A block that must not run that way says so in an HTML comment on the line right above its fence,
invisible on GitHub and in the built site. The markers are:

``<!-- docs-test: pytest -->``
    The block is a test module (the ``contextthreads.testing`` how-to's ``test_jobs.py``): it runs
    under ``python -m pytest``, and every test in it must pass.
``<!-- docs-test: needs MODULE [MODULE ...] -->``
    The block imports optional packages (libcst for the codemod, cloudpickle for Fluster,
    OpenTelemetry's SDK): it runs wherever they import, and is skipped, naming them, elsewhere
    (libcst does not install on every interpreter of the matrix).
``<!-- docs-test: skip: REASON -->``
    The block cannot run on one machine: it needs a real cluster engine at addresses of its own
    (Slurm's login node, a Ray head). REASON must name the test that runs the same thing instead,
    as ``tests/PATH.py::test_name``; the test below checks that the test exists. Today these are
    the Slurm and Ray pools of ``docs/howto/fluster-cluster.md``, run against throwaway clusters
    by ``tests/fluster/test_slurm.py`` and ``tests/fluster/test_ray.py``. The scripts in
    ``examples/`` are run by ``tests/test_examples.py``.

Any other ``docs-test`` comment, or one not followed by a python block, fails the suite.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
PAGES = [page for page in PAGES if "_build" not in page.parts]

PUBLIC_PACKAGES = (
    "contextthreads",
    "contextthreads.testing",
    "contextthreads.fluster",
    "contextthreads.migrate",
)

#: Long enough for a Fluster pool's worker processes on a loaded two-core machine.
TIMEOUT = 120

_FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)")
_MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
_COVERING_TEST = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    marker: str | None  # the docs-test comment right above the fence, if any

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """Return the fenced code blocks of ``page``, outermost fences only."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        ticks, language = fence.groups()
        end = index + 1
        while end < len(lines) and not lines[end].startswith(ticks):
            end += 1
        above = _MARKER.match(lines[index - 1]) if index else None
        found.append(
            Block(
                page=page,
                line=index + 1,
                language=language,
                code="\n".join(lines[index + 1 : end]) + "\n",
                marker=above.group(1) if above else None,
            )
        )
        index = end + 1
    return found


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language == "python"]


def test_pages_have_python_examples() -> None:
    """The collection found the pages and their examples (a broken glob would pass vacuously)."""
    assert ROOT / "README.md" in PAGES
    assert len(PAGES) >= 10
    assert len(PYTHON_BLOCKS) >= 15


def test_every_marker_is_known_and_on_a_python_block() -> None:
    """Each docs-test comment is one of the three markers, right above a python block."""
    marked = {(block.page, block.line - 1) for block in PYTHON_BLOCKS if block.marker}
    for page in PAGES:
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if "docs-test" not in line:
                continue
            where = f"{page.relative_to(ROOT)}:{number}"
            match = _MARKER.match(line)
            assert match, f"{where}: not a docs-test marker: {line!r}"
            assert (page, number) in marked, (
                f"{where}: a marker must sit right above a python block"
            )
            kind = match.group(1).split(":")[0].split()[0]
            assert kind in {"pytest", "needs", "skip"}, f"{where}: unknown marker {kind!r}"


@pytest.mark.parametrize(
    "block",
    [block for block in PYTHON_BLOCKS if (block.marker or "").startswith("skip")],
    ids=lambda block: block.name,
)
def test_skipped_block_names_the_test_that_covers_it(block: Block) -> None:
    """A block left unrun names an existing test that runs the same thing instead."""
    reason = block.marker.partition(":")[2].strip() if block.marker else ""
    covering = _COVERING_TEST.findall(reason)
    assert covering, f"{block.name}: say which test covers it: tests/PATH.py::test_name"
    for path, test in covering:
        source = (ROOT / path).read_text(encoding="utf-8")
        assert re.search(rf"^def {test}\(", source, re.MULTILINE), f"{path} has no {test}"


@pytest.mark.parametrize(
    "block",
    [block for block in PYTHON_BLOCKS if not (block.marker or "").startswith("skip")],
    ids=lambda block: block.name,
)
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    """The block, saved as a file of its own, runs to completion and exits 0."""
    command = [sys.executable]
    marker = block.marker or ""
    if marker.startswith("needs"):
        missing = [name for name in marker.split()[1:] if not _importable(name)]
        if missing:
            pytest.skip(f"needs {', '.join(missing)}, not installed here")
    if marker == "pytest":
        script = tmp_path / "test_block.py"
        command += ["-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    else:
        script = tmp_path / "block.py"
        command.append(str(script))
    script.write_text(block.code, encoding="utf-8")
    proc = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, f"{block.name} failed:\n{proc.stdout}\n{proc.stderr}"


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


_DIRECTIVE = re.compile(
    r"^\.\. (?:auto(?:class|function|exception|data)|py:(?:class|function|exception|data))"
    r"::\s*([\w.]+)(?:\n   :module: ([\w.]+))?",
    re.MULTILINE,
)


def test_reference_documents_exactly_the_public_names() -> None:
    """docs/reference/ documents every name of each package's __all__, and no other."""
    documented = {
        f"{module}.{name}" if module else name
        for page in sorted((DOCS / "reference").glob("*.md"))
        for name, module in _DIRECTIVE.findall(page.read_text(encoding="utf-8"))
    }
    public = {
        f"{package}.{name}"
        for package in PUBLIC_PACKAGES
        for name in importlib.import_module(package).__all__
    }
    assert sorted(public - documented) == [], "public names missing from the reference"
    assert sorted(documented - public) == [], "the reference documents names not in any __all__"


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    # The anchors GitHub and MyST (myst_heading_anchors) give headings.
    anchors = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{1,6}\s+(.*)", line)
        if heading:
            text = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_readme_links_land() -> None:
    """Each relative link of the README names a file of the repository, and a heading in it."""
    readme = ROOT / "README.md"
    for target in _LINK.findall(readme.read_text(encoding="utf-8")):
        if re.match(r"\w+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        page = (readme.parent / path).resolve() if path else readme
        assert page.exists(), f"README links to {target}, which does not exist"
        if anchor and page.suffix == ".md":
            assert anchor in _anchors(page), f"README links to {target}: no such heading"


def _documented_callables(package: str) -> Iterator[tuple[str, Any, Callable[..., Any]]]:
    """Yield (name, the object whose docstring documents it, what has its signature)."""
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if not inspect.isclass(value):
            if inspect.isfunction(value):
                yield f"{package}.{name}", value, value
            continue
        if getattr(value, "_is_protocol", False):  # JobLauncher, JobHandle, Resolver
            init = None
        else:
            init = value.__init__ if "__init__" in vars(value) else None
        if init is not None:
            yield f"{package}.{name}", value, init
        for attribute, member in vars(value).items():
            function = getattr(member, "__func__", member)
            if not attribute.startswith("_") and inspect.isfunction(function):
                yield f"{package}.{name}.{attribute}", function, function


#: The packages whose docstrings follow the Google style with every parameter stated.
ARGS_STATED = (
    "contextthreads",
    "contextthreads.testing",
    "contextthreads.fluster",
    "contextthreads.migrate",
)


@pytest.mark.parametrize("package", ARGS_STATED)
def test_public_docstrings_state_every_parameter(package: str) -> None:
    """Each public callable's docstring names each parameter in an Args: or Attributes: list."""
    missing = []
    for name, documented, signed in _documented_callables(package):
        doc = inspect.getdoc(documented) or ""
        for parameter in inspect.signature(signed).parameters.values():
            if parameter.name in ("self", "cls"):
                continue
            stars: dict[Any, str] = {
                parameter.VAR_POSITIONAL: r"\*",
                parameter.VAR_KEYWORD: r"\*\*",
            }
            spelled = stars.get(parameter.kind, "") + parameter.name
            if not re.search(rf"^\s+{spelled}:", doc, re.MULTILINE):
                missing.append(f"{name}: {parameter.name}")
    assert missing == [], "parameters no docstring states"
