"""How the package's modules import each other: one way down, through public names only.

Read from the source with ``ast``, so imports inside functions (lazy ones) and
under ``if TYPE_CHECKING:`` count as much as those at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "contextthreads"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES: Dict[str, Path] = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}
TREES: Dict[str, ast.Module] = {name: ast.parse(path.read_text()) for name, path in SOURCES.items()}


def is_package(name: str) -> bool:
    return SOURCES[name].name == "__init__.py"


def absolute(importer: str, node: ast.ImportFrom) -> str:
    """Return the module a ``from ... import`` names, made absolute."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    base = base if is_package(importer) else base[:-1]
    if node.level > 1:
        base = base[: 1 - node.level]
    return ".".join([*base, node.module] if node.module else base)


def imports(importer: str) -> Iterator[Tuple[str, str | None, ast.Import | ast.ImportFrom]]:
    """Yield (module, name or None, node) for every import in ``importer``, at any depth.

    ``from package import submodule`` yields the submodule, with no name.
    """
    for node in ast.walk(TREES[importer]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node
        elif isinstance(node, ast.ImportFrom):
            source = absolute(importer, node)
            for alias in node.names:
                if f"{source}.{alias.name}" in SOURCES:
                    yield f"{source}.{alias.name}", None, node
                else:
                    yield source, alias.name, node


def internal_edges() -> Dict[str, Set[str]]:
    edges: Dict[str, Set[str]] = {name: set() for name in SOURCES}
    for importer in SOURCES:
        for module, _, _ in imports(importer):
            if module in SOURCES and module != importer:
                edges[importer].add(module)
    return edges


def circles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Return the strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def bound_at_top(tree: ast.Module) -> Set[str]:
    """Return the names a module binds outside functions and classes, in any branch."""
    names: Set[str] = set()
    pending: List[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        for field in ("body", "orelse", "finalbody", "handlers"):
            pending.extend(getattr(node, field, []))
    return names


def declared_all(tree: ast.Module) -> Tuple[str, ...] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple), "__all__ must be a tuple"
            return value
    return None


def test_the_walk_sees_every_kind_of_import() -> None:
    """The checker finds top-level, lazy (in a function) and TYPE_CHECKING imports, and
    reports a circle made of them: it would not pass vacuously."""
    fluster = "contextthreads.fluster"
    assert "contextthreads._thread" in internal_edges()[f"{fluster}._http"]
    lazy = [m for m, _, _ in imports("contextthreads") if m.endswith("_executor")]
    assert lazy, "the package's TYPE_CHECKING imports are seen"
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_anywhere_in_the_package() -> None:
    """No module of contextthreads imports, however indirectly, a module that imports it."""
    assert circles(internal_edges()) == []


def test_no_module_imports_another_modules_private_names() -> None:
    """Modules import only public names from each other (a private module's public names
    are its interface), and touch no underscored attribute of another module of ours."""
    offences = []
    for importer in SOURCES:
        aliases: Set[str] = set()
        for module, name, statement in imports(importer):
            if module not in SOURCES:
                continue
            if name is not None and is_private(name):
                offences.append(f"{importer}:{statement.lineno} imports {name} from {module}")
            if name is None:
                aliases.update(a.asname or a.name.rsplit(".", 1)[-1] for a in statement.names)
        for node in ast.walk(TREES[importer]):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and is_private(node.attr)
            ):
                offences.append(f"{importer}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert offences == []


MODULES_WITH_ALL = sorted(name for name, tree in TREES.items() if declared_all(tree) is not None)


@pytest.mark.parametrize("module", MODULES_WITH_ALL)
def test_all_is_the_modules_interface(module: str) -> None:
    """A module's ``__all__`` names only what it defines, and every name another module of
    the package imports from it (what re-exports and siblings use)."""
    declared = declared_all(TREES[module])
    assert declared is not None
    assert sorted(set(declared) - bound_at_top(TREES[module])) == []
    used = {
        f"{importer} imports {name}"
        for importer in SOURCES
        for source, name, _ in imports(importer)
        if source == module and name is not None and name not in declared
    }
    assert sorted(used) == []
