"""Decide, for one module, which uses of the stdlib classes change and which stay.

Every reference to ``threading.Thread``, ``threading.Timer`` or
``concurrent.futures.ThreadPoolExecutor`` is one of three kinds:

- *build*: a construction (``Thread(...)``), a base class (``class W(Thread)``),
  or a call through the base inside a class whose base is rewritten
  (``Thread.__init__(self)``). These change to contextthreads.
- *type*: an annotation, a subscript (``Optional[Thread]``), the second
  argument of ``isinstance``/``issubclass``, the first of ``cast``. These keep
  the stdlib class, which every contextthreads class subclasses.
- *value*: anything else: ``Thread.start = f``, ``old = Thread.start``,
  ``wrap_function_wrapper(Thread, ...)``, ``type(t) is Thread``, ``x = Thread``.
  The code is talking about the stdlib class itself, so these stay.

A file where one class is both built and used as a value, or where a name we
would rewrite is bound to something else too, is left alone and reported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Sequence, Union

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import (
    Assignment,
    GlobalScope,
    ImportAssignment,
    MetadataWrapper,
    PositionProvider,
    Scope,
    ScopeProvider,
)

from ._problems import Problem

__all__ = ("MODULE", "TARGETS", "Plan", "Statement", "analyse")

#: Fully qualified stdlib class -> the name contextthreads exports for it.
TARGETS = {
    "threading.Thread": "Thread",
    "threading.Timer": "Timer",
    "concurrent.futures.ThreadPoolExecutor": "ThreadPoolExecutor",
    "concurrent.futures.thread.ThreadPoolExecutor": "ThreadPoolExecutor",
}
_PREFIXES = frozenset(
    ".".join(target.split(".")[:n]) for target in TARGETS for n in range(1, target.count(".") + 1)
)
MODULE = "contextthreads"
_TYPE_TESTS = {"isinstance": 1, "issubclass": 1}
_BUILD, _TYPE, _VALUE = "build", "type", "value"

Statement = Union[cst.Import, cst.ImportFrom]


@dataclass(eq=False)
class _Use:
    """One expression that evaluates to a stdlib class."""

    node: cst.CSTNode  # Name or Attribute; SimpleString for a string annotation
    target: str  # the stdlib name as written in TARGETS
    binding: _Binding
    kind: str = _VALUE


@dataclass(eq=False)
class _Binding:
    """One import alias that gives access to a stdlib class or its module."""

    statement: Statement
    alias: cst.ImportAlias
    name: str  # the name it binds in its scope
    scope: Scope
    of_class: bool  # "from threading import Thread", not "import threading"
    uses: list[_Use] = field(default_factory=list)
    other_uses: int = 0  # references that reach something else: threading.Lock


class _Found(NamedTuple):
    nodes: Sequence[cst.CSTNode]  # where the problem is: the first in the file is reported
    reason: str  # may name "{other}": the first line of ``others``
    others: Sequence[cst.CSTNode] = ()


@dataclass
class Plan:
    """What the analysis decided, keyed by the original nodes."""

    # Use sites (Name or Attribute) to replace with contextthreads.<name>.
    uses: dict[cst.CSTNode, str] = field(default_factory=dict)
    # from-import aliases that move to "from contextthreads import ...".
    moves: dict[cst.ImportFrom, list[cst.ImportAlias]] = field(default_factory=dict)
    # module aliases ("import threading", "from concurrent import futures") left unused.
    drops: dict[Statement, list[cst.ImportAlias]] = field(default_factory=dict)
    # per block, the import statement next to which "import contextthreads" goes.
    binds: dict[cst.CSTNode, Statement] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.uses or self.moves or self.drops or self.binds)


def _canonical(target: str) -> str:
    return target.replace(".thread.", ".")


#: Nodes that are never a parent we ask about; skipping them halves the walk.
_LEAVES = (
    cst.BaseParenthesizableWhitespace,
    cst.EmptyLine,
    cst.TrailingWhitespace,
    cst.Newline,
    cst.Comment,
)
_FIELDS: dict[type, tuple[str, ...]] = {}


def _parents(module: cst.Module) -> dict[cst.CSTNode, cst.CSTNode]:
    """Map each node to its parent, whitespace aside.

    libcst's ParentNodeProvider does the same through the visitor machinery at
    ten times the cost, a third of a whole run: walking the dataclass fields
    directly is enough, since nothing is replaced.
    """
    parents: dict[cst.CSTNode, cst.CSTNode] = {}
    stack: list[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        kind = type(node)
        names = _FIELDS.get(kind)
        if names is None:
            names = _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind))
        for name in names:
            value = getattr(node, name)
            children = value if isinstance(value, (tuple, list)) else (value,)
            for child in children:
                if isinstance(child, cst.CSTNode) and not isinstance(child, _LEAVES):
                    parents[child] = node
                    stack.append(child)
    return parents


def _alias_for(statement: Statement, assignment: ImportAssignment) -> Optional[cst.ImportAlias]:
    if isinstance(statement.names, cst.ImportStar):
        return None
    for alias in statement.names:
        bound = alias.asname.name if alias.asname is not None else alias.name
        if bound is assignment.as_name or alias.name is assignment.as_name:
            return alias
    return None


class _Analysis:
    def __init__(self, wrapper: MetadataWrapper) -> None:
        self.wrapper = wrapper
        self.parents = _parents(wrapper.module)
        scopes = wrapper.resolve(ScopeProvider)
        self.module_has_contextthreads = False
        self.bindings: dict[cst.ImportAlias, _Binding] = {}
        self.uses: list[_Use] = []
        self.anchors: list[Statement] = []  # imports whose rewritten uses need contextthreads
        seen: set[int] = set()
        for scope in scopes.values():
            if scope is not None and id(scope) not in seen:
                seen.add(id(scope))
                self._scan(scope)

    # --- finding the uses ------------------------------------------------------

    def _scan(self, scope: Scope) -> None:
        for assignment in scope.assignments:
            if not isinstance(assignment, ImportAssignment):
                continue
            statement = assignment.node
            if not isinstance(statement, (cst.Import, cst.ImportFrom)):
                continue
            alias = _alias_for(statement, assignment)
            if alias is None:
                continue
            if isinstance(statement, cst.Import):
                dotted = get_full_name_for_node(alias.name) or ""
                if dotted == MODULE and alias.asname is None and isinstance(scope, GlobalScope):
                    self.module_has_contextthreads = True
                # "import a.b" binds "a" (libcst also records "a.b"); "as" binds the whole path.
                module = dotted if alias.asname is not None else assignment.name
                if module in _PREFIXES:
                    self._module_refs(statement, alias, assignment, module)
            elif not statement.relative and statement.module is not None:
                package = get_full_name_for_node(statement.module)
                full = f"{package}.{get_full_name_for_node(alias.name)}"
                if full in TARGETS:
                    binding = self._binding(statement, alias, assignment, of_class=True)
                    for ref in assignment.references:
                        self._use(ref.node, full, binding)
                elif full in _PREFIXES:
                    self._module_refs(statement, alias, assignment, full)

    def _binding(
        self,
        statement: Statement,
        alias: cst.ImportAlias,
        assignment: ImportAssignment,
        *,
        of_class: bool,
    ) -> _Binding:
        binding = self.bindings.get(alias)
        if binding is None:
            if alias.asname is not None:
                name = get_full_name_for_node(alias.asname.name) or ""
            else:  # "import a.b" binds "a"
                name = (get_full_name_for_node(alias.name) or "").split(".")[0]
            binding = _Binding(statement, alias, name, assignment.scope, of_class)
            self.bindings[alias] = binding
        return binding

    def _module_refs(
        self,
        statement: Statement,
        alias: cst.ImportAlias,
        assignment: ImportAssignment,
        module: str,
    ) -> None:
        binding = self._binding(statement, alias, assignment, of_class=False)
        for ref in assignment.references:
            node: cst.CSTNode = ref.node
            path = module
            while True:
                parent = self.parents.get(node)
                if not (isinstance(parent, cst.Attribute) and parent.value is node):
                    binding.other_uses += 1
                    break
                path = f"{path}.{parent.attr.value}"
                node = parent
                if path in TARGETS:
                    self._use(node, path, binding)
                    break
                if path not in _PREFIXES:
                    binding.other_uses += 1
                    break

    def _use(self, node: cst.CSTNode, target: str, binding: _Binding) -> None:
        use = _Use(node, target, binding)
        binding.uses.append(use)
        self.uses.append(use)

    # --- classifying them ------------------------------------------------------

    def classify(self) -> None:
        subclassed: set[tuple[cst.ClassDef, str]] = set()
        through_base: list[tuple[_Use, cst.CSTNode]] = []
        for use in self.uses:
            node = use.node
            if isinstance(node, (cst.SimpleString, cst.ConcatenatedString)):
                use.kind = _TYPE  # a string annotation
                continue
            parent = self.parents.get(node)
            grand = self.parents.get(parent) if parent is not None else None
            if isinstance(parent, cst.Call) and parent.func is node:
                use.kind = _BUILD
            elif (
                isinstance(parent, cst.Arg)
                and isinstance(grand, cst.ClassDef)
                and any(base is parent for base in grand.bases)
            ):
                use.kind = _BUILD
                subclassed.add((grand, _canonical(use.target)))
            elif (
                isinstance(parent, cst.Attribute)
                and parent.value is node
                and isinstance(grand, cst.Call)
                and grand.func is parent
            ):
                through_base.append((use, grand))
            elif self._is_type(node):
                use.kind = _TYPE
        for use, call in through_base:
            owner = self._enclosing_class(call)
            if owner is not None and (owner, _canonical(use.target)) in subclassed:
                use.kind = _BUILD

    def _enclosing_class(self, node: cst.CSTNode) -> Optional[cst.ClassDef]:
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, cst.ClassDef):
            parent = self.parents.get(parent)
        return parent

    def _is_type(self, node: cst.CSTNode) -> bool:
        parent = self.parents.get(node)
        while parent is not None:
            if isinstance(parent, (cst.Annotation, cst.SubscriptElement)):
                return True
            if isinstance(parent, cst.Arg):
                call = self.parents.get(parent)
                if isinstance(call, cst.Call):
                    callee = get_full_name_for_node(call.func) or ""
                    short = callee.rsplit(".", 1)[-1]
                    position = next((i for i, arg in enumerate(call.args) if arg is parent), -1)
                    if _TYPE_TESTS.get(short, -1) == position:
                        return True
                    if callee in ("cast", "typing.cast") and position == 0:
                        return True
                return False
            if isinstance(parent, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
                return False
            parent = self.parents.get(parent)
        return False

    # --- deciding --------------------------------------------------------------

    def problems(self) -> list[_Found]:
        found: list[_Found] = []
        by_target: dict[str, dict[str, list[_Use]]] = {}
        for use in self.uses:
            by_target.setdefault(_canonical(use.target), {}).setdefault(use.kind, []).append(use)
        for target, kinds in by_target.items():
            builds, values = kinds.get(_BUILD), kinds.get(_VALUE)
            if builds and values:
                found.append(
                    _Found(
                        [use.node for use in values],
                        f"{target} is used as a value here (patched, passed, assigned or compared) "
                        "and also built or subclassed (line {other}): rewriting only the builds "
                        "would split them",
                        [use.node for use in builds],
                    )
                )
        for binding in self.bindings.values():
            if not any(use.kind == _BUILD for use in binding.uses):
                continue
            if binding.of_class and all(use.kind == _BUILD for use in binding.uses):
                continue  # the import itself moves, whatever else the name is bound to
            others = [
                other.node
                for other in binding.scope.assignments[binding.name]
                if isinstance(other, Assignment) and not self._same_import(other, binding)
            ]
            if others:
                found.append(
                    _Found(
                        others,
                        f"`{binding.name}` is bound here as well as by its import "
                        "(line {other}), so its uses may not be the stdlib class",
                        [binding.statement],
                    )
                )
        return found

    def _same_import(self, other: object, binding: _Binding) -> bool:
        if not isinstance(other, ImportAssignment):
            return False
        if other.node is binding.statement:
            return True
        statement = other.node
        if not isinstance(statement, (cst.Import, cst.ImportFrom)):
            return False
        alias = _alias_for(statement, other)
        return alias is not None and self._names(statement, alias) == self._names(
            binding.statement, binding.alias
        )

    @staticmethod
    def _names(statement: Statement, alias: cst.ImportAlias) -> str:
        name = get_full_name_for_node(alias.name) or ""
        if isinstance(statement, cst.ImportFrom):
            module = get_full_name_for_node(statement.module) if statement.module else ""
            return f"{'.' * len(statement.relative)}{module}.{name}"
        return name

    def plan(self) -> Plan:
        plan = Plan()
        anchors: list[Statement] = []
        for binding in self.bindings.values():
            builds = [use for use in binding.uses if use.kind == _BUILD]
            if not builds:
                continue
            statement = binding.statement
            if binding.of_class and len(builds) == len(binding.uses):
                assert isinstance(statement, cst.ImportFrom)
                plan.moves.setdefault(statement, []).append(binding.alias)
                continue
            for use in builds:
                plan.uses[use.node] = TARGETS[use.target]
            if statement not in anchors:
                anchors.append(statement)
            if (
                not binding.of_class
                and binding.other_uses == 0
                and len(builds) == len(binding.uses)
            ):
                plan.drops.setdefault(statement, []).append(binding.alias)
        self.anchors = anchors
        self._place(plan, anchors)
        return plan

    def _place(self, plan: Plan, anchors: list[Statement]) -> None:
        """Bind ``contextthreads`` once per block, by the first import whose uses need it.

        A nested block inside a function needs no binding of its own when the
        module has one: the function runs after the module's imports.
        """
        module = self.wrapper.module
        by_block: dict[cst.CSTNode, list[Statement]] = {}
        for statement in anchors:
            line = self.parents[statement]
            block = self.parents.get(line)
            if isinstance(line, cst.SimpleStatementLine) and block is not None:
                by_block.setdefault(block, []).append(statement)
        at_module = self.module_has_contextthreads or module in by_block
        for block, statements in by_block.items():
            if block is module and self.module_has_contextthreads:
                continue
            if block is not module and at_module and self._in_function(block):
                continue
            body = list(getattr(block, "body", ()))
            position = {id(line): index for index, line in enumerate(body)}
            plan.binds[block] = min(
                statements, key=lambda s: position.get(id(self.parents[s]), len(body))
            )

    def _in_function(self, node: cst.CSTNode) -> bool:
        parent = self.parents.get(node)
        while parent is not None:
            if isinstance(parent, (cst.FunctionDef, cst.Lambda)):
                return True
            parent = self.parents.get(parent)
        return False

    def check_lines(self, plan: Plan) -> list[_Found]:
        """Return the changed imports that cannot be edited in place (``if x: import a``)."""
        found: list[_Found] = []
        touched = [*plan.moves, *plan.drops, *self.anchors]
        for statement in touched:
            if isinstance(self.parents.get(statement), cst.SimpleStatementSuite):
                found.append(
                    _Found(
                        [statement], "an import on one line with its `if`/`try`: edit it by hand"
                    )
                )
        return found

    def located(self, found: list[_Found]) -> tuple[Problem, ...]:
        # Positions cost a pass of their own: only a file we refuse pays for them.
        positions = self.wrapper.resolve(PositionProvider)

        def first(nodes: Sequence[cst.CSTNode]) -> int:
            return min((positions[node].start.line for node in nodes), default=0)

        problems = {
            Problem(first(item.nodes), item.reason.format(other=first(item.others)))
            for item in found
        }
        return tuple(sorted(problems))


def analyse(wrapper: MetadataWrapper) -> tuple[Plan, tuple[Problem, ...]]:
    """Return the plan for ``wrapper``'s module, or an empty one and the problems that forbid it."""
    analysis = _Analysis(wrapper)
    analysis.classify()
    found = analysis.problems()
    plan = Plan() if found else analysis.plan()
    found += analysis.check_lines(plan)
    if found:
        return Plan(), analysis.located(found)
    return plan, ()
