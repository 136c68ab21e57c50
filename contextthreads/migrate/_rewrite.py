"""Rewrite one module's source so its threads and thread pools come from contextthreads.

Works on libcst's concrete syntax tree, so everything not rewritten keeps its
exact bytes: comments, strings, formatting, line endings, encoding. Names are
followed through scopes, so a local ``Thread = ...`` or an unrelated
``threading`` attribute is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import (
    Access,
    GlobalScope,
    ImportAssignment,
    MetadataWrapper,
    ParentNodeProvider,
    Scope,
    ScopeProvider,
)

__all__ = ("rewrite_module",)

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
_MODULE = "contextthreads"
# Calls whose arguments name a class to test against, not to build: a plain
# thread must still pass isinstance(t, threading.Thread).
_TYPE_TESTS = {"isinstance": 1, "issubclass": 1}
_CASTS = {"cast": 0}

_Statement = Union[cst.Import, cst.ImportFrom]


@dataclass
class _Plan:
    """What the analysis decided, keyed by the original nodes."""

    # Use sites (Name or Attribute) to replace with contextthreads.<name>.
    uses: dict[cst.CSTNode, str] = field(default_factory=dict)
    # from-import aliases that move to "from contextthreads import ...".
    moves: dict[cst.ImportFrom, list[cst.ImportAlias]] = field(default_factory=dict)
    # module aliases ("import threading", "from concurrent import futures") left unused.
    drops: dict[_Statement, list[cst.ImportAlias]] = field(default_factory=dict)
    # import statements whose rewritten uses need "import contextthreads".
    anchors: list[_Statement] = field(default_factory=list)
    # where "import contextthreads" goes: "replace" the statement, or "after" it.
    placement: dict[_Statement, str] = field(default_factory=dict)


def _alias_for(statement: _Statement, assignment: ImportAssignment) -> Optional[cst.ImportAlias]:
    if isinstance(statement.names, cst.ImportStar):
        return None
    for alias in statement.names:
        bound = alias.asname.name if alias.asname is not None else alias.name
        if bound is assignment.as_name or alias.name is assignment.as_name:
            return alias
    return None


class _Analysis:
    """Follow every import of the target modules to its uses, and decide what changes."""

    def __init__(self, wrapper: MetadataWrapper) -> None:
        self.parents = wrapper.resolve(ParentNodeProvider)
        scopes = wrapper.resolve(ScopeProvider)
        self.plan = _Plan()
        self.module_has_contextthreads = False
        self._rewritten: set[cst.CSTNode] = set()  # references inside rewritten uses
        self._drop_candidates: list[tuple[_Statement, cst.ImportAlias, Scope]] = []
        seen: set[int] = set()
        for scope in scopes.values():
            if scope is None or id(scope) in seen:
                continue
            seen.add(id(scope))
            self._scan(scope)
        self._decide_drops()
        self._place(wrapper.module)

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
                self._plain_import(statement, alias, assignment)
            elif not statement.relative and statement.module is not None:
                self._from_import(statement, alias, assignment)

    def _plain_import(
        self, statement: cst.Import, alias: cst.ImportAlias, assignment: ImportAssignment
    ) -> None:
        dotted = get_full_name_for_node(alias.name) or ""
        if dotted == _MODULE and alias.asname is None and isinstance(assignment.scope, GlobalScope):
            self.module_has_contextthreads = True
        # "import a.b" binds "a" (libcst also records "a.b"); "as" binds the whole path.
        module = dotted if alias.asname is not None else assignment.name
        if module not in _PREFIXES:
            return
        rewritten = [ref for ref in assignment.references if self._module_use(ref, module)]
        if rewritten:
            self._anchor(statement)
            self._drop_candidates.append((statement, alias, assignment.scope))

    def _decide_drops(self) -> None:
        # Only once every use is known: "import concurrent.futures" makes two
        # bindings, and the alias goes only if neither is used anywhere else.
        for statement, alias, scope in self._drop_candidates:
            if alias in self.plan.drops.get(statement, []):
                continue
            for assignment in scope.assignments:
                if (
                    isinstance(assignment, ImportAssignment)
                    and assignment.node is statement
                    and _alias_for(statement, assignment) is alias
                    and any(ref.node not in self._rewritten for ref in assignment.references)
                ):
                    break
            else:
                self.plan.drops.setdefault(statement, []).append(alias)

    def _from_import(
        self, statement: cst.ImportFrom, alias: cst.ImportAlias, assignment: ImportAssignment
    ) -> None:
        module = get_full_name_for_node(statement.module) if statement.module else None
        name = get_full_name_for_node(alias.name)
        if module is None or name is None:
            return
        full = f"{module}.{name}"
        references = list(assignment.references)
        if full in TARGETS:
            rewrite = [ref for ref in references if not self._keeps_stdlib(ref.node)]
            if len(rewrite) == len(references):
                self.plan.moves.setdefault(statement, []).append(alias)
            elif rewrite:
                for ref in rewrite:
                    self.plan.uses[ref.node] = TARGETS[full]
                self._anchor(statement)
        elif full in _PREFIXES:
            rewritten = [ref for ref in references if self._module_use(ref, full)]
            if rewritten:
                self._anchor(statement)
                self._drop_candidates.append((statement, alias, assignment.scope))

    def _emptied(self, statement: _Statement) -> bool:
        names = statement.names
        if isinstance(names, cst.ImportStar):
            return False
        dropped = self.plan.drops.get(statement, [])
        return all(alias in dropped for alias in names)

    def _has_comments(self, statement: _Statement) -> bool:
        line = self.parents.get(statement)
        if not isinstance(line, cst.SimpleStatementLine):
            return False
        return line.trailing_whitespace.comment is not None or any(
            empty.comment is not None for empty in line.leading_lines
        )

    def _in_function(self, node: cst.CSTNode) -> bool:
        parent = self.parents.get(node)
        while parent is not None:
            if isinstance(parent, (cst.FunctionDef, cst.Lambda)):
                return True
            parent = self.parents.get(parent)
        return False

    def _place(self, module: cst.Module) -> None:
        """Bind ``contextthreads`` once per block, at the first import whose uses need it.

        A nested block inside a function needs no binding of its own when the
        module has one: the function runs after the module's imports.
        """
        order = _ImportOrder()
        module.visit(order)
        anchors = sorted(self.plan.anchors, key=lambda node: order.index.get(node, 0))
        by_block: dict[cst.CSTNode, list[_Statement]] = {}
        for statement in anchors:
            block = self.parents.get(self.parents[statement])
            if block is not None:
                by_block.setdefault(block, []).append(statement)
        at_module = self.module_has_contextthreads or module in by_block
        for block, statements in by_block.items():
            first = statements[0]
            skip = (block is module and self.module_has_contextthreads) or (
                block is not module and at_module and self._in_function(block)
            )
            if not skip:
                self.plan.placement[first] = "replace" if self._emptied(first) else "after"
            for statement in statements:
                # Dropping a whole commented line would drop its comments: keep
                # that unused import instead.
                if (
                    statement not in self.plan.placement
                    and self._has_comments(statement)
                    and self._emptied(statement)
                ):
                    self.plan.drops.pop(statement, None)

    def _anchor(self, statement: _Statement) -> None:
        if statement not in self.plan.anchors:
            self.plan.anchors.append(statement)

    def _module_use(self, ref: Access, module: str) -> bool:
        """Record ``ref`` if it is the start of ``<module>.Thread`` and the like."""
        node: cst.CSTNode = ref.node
        path = module
        while True:
            parent = self.parents.get(node)
            if not (isinstance(parent, cst.Attribute) and parent.value is node):
                return False
            path = f"{path}.{parent.attr.value}"
            node = parent
            if path in TARGETS:
                if self._keeps_stdlib(node):
                    return False
                self.plan.uses[node] = TARGETS[path]
                self._rewritten.add(ref.node)
                return True
            if path not in _PREFIXES:
                return False

    def _keeps_stdlib(self, node: cst.CSTNode) -> bool:
        """Return True where the class is a type to test against, not one to build.

        Annotations, subscripts (``Optional[Thread]``), ``isinstance`` and
        ``issubclass`` second arguments, and ``cast`` targets keep the stdlib
        class: every contextthreads class is a subclass of it, so they stay true.
        """
        child = node
        parent = self.parents.get(child)
        while parent is not None:
            if isinstance(parent, (cst.Annotation, cst.SubscriptElement)):
                return True
            if isinstance(parent, cst.Arg):
                call = self.parents.get(parent)
                if isinstance(call, cst.Call):
                    callee = get_full_name_for_node(call.func) or ""
                    short = callee.rsplit(".", 1)[-1]
                    position = next((i for i, arg in enumerate(call.args) if arg is parent), -1)
                    if _TYPE_TESTS.get(short, -1) == position or (
                        _CASTS.get(short, -1) == position and callee in ("cast", "typing.cast")
                    ):
                        return True
                return False
            if isinstance(parent, (cst.BaseSmallStatement, cst.BaseCompoundStatement)):
                return False
            child, parent = parent, self.parents.get(parent)
        return False


class _ImportOrder(cst.CSTVisitor):
    """Number the import statements in source order."""

    def __init__(self) -> None:
        super().__init__()
        self.index: dict[cst.CSTNode, int] = {}

    def visit_Import(self, node: cst.Import) -> None:
        self.index[node] = len(self.index)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self.index[node] = len(self.index)


def _contextthreads_attr(name: str, like: cst.BaseExpression) -> cst.Attribute:
    return cst.Attribute(
        value=cst.Name(_MODULE), attr=cst.Name(name), lpar=like.lpar, rpar=like.rpar
    )


def _merge_ws(own: cst.BaseParenthesizableWhitespace, tail: object) -> object:
    # Keep this alias's own comment, end the line the way the old last one did.
    if isinstance(own, cst.ParenthesizedWhitespace) and isinstance(
        tail, cst.ParenthesizedWhitespace
    ):
        return tail.with_changes(first_line=own.first_line)
    return tail


def _has_comment(ws: object) -> bool:
    return isinstance(ws, cst.ParenthesizedWhitespace) and ws.first_line.comment is not None


def _retail(
    kept: Sequence[cst.ImportAlias], original: Sequence[cst.ImportAlias], statement: cst.ImportFrom
) -> tuple[list[cst.ImportAlias], cst.ImportFrom]:
    """Return ``kept`` with a valid last comma, and ``statement`` with a matching ``)``."""
    aliases = list(kept)
    last, old_last = aliases[-1], original[-1]
    if last is old_last:
        return aliases, statement
    if statement.lpar is None:
        aliases[-1] = last.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return aliases, statement
    comma = last.comma
    if isinstance(old_last.comma, cst.Comma) and isinstance(comma, cst.Comma):
        aliases[-1] = last.with_changes(
            comma=comma.with_changes(
                whitespace_after=_merge_ws(comma.whitespace_after, old_last.comma.whitespace_after)
            )
        )
    elif isinstance(comma, cst.Comma) and _has_comment(comma.whitespace_after):
        # The comment needs its newline: keep the comma and that line, drop the
        # whitespace the ")" had, which followed the old last alias.
        ws = comma.whitespace_after
        assert isinstance(ws, cst.ParenthesizedWhitespace)
        rpar_ws = statement.rpar.whitespace_before if statement.rpar else None
        indent = rpar_ws.last_line if isinstance(rpar_ws, cst.ParenthesizedWhitespace) else None
        aliases[-1] = last.with_changes(
            comma=comma.with_changes(
                whitespace_after=ws.with_changes(
                    empty_lines=[],
                    last_line=indent if indent is not None else cst.SimpleWhitespace(""),
                )
            )
        )
        if statement.rpar is not None:
            statement = statement.with_changes(
                rpar=statement.rpar.with_changes(whitespace_before=cst.SimpleWhitespace(""))
            )
    else:
        aliases[-1] = last.with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return aliases, statement


def _import_contextthreads() -> cst.Import:
    return cst.Import(names=[cst.ImportAlias(name=cst.Name(_MODULE))])


class _Rewriter(cst.CSTTransformer):
    """Apply a ``_Plan``: rewrite the chosen uses and imports, touch nothing else."""

    def __init__(self, plan: _Plan) -> None:
        super().__init__()
        self.plan = plan

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        name = self.plan.uses.get(original_node)
        return updated_node if name is None else _contextthreads_attr(name, updated_node)

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        name = self.plan.uses.get(original_node)
        return updated_node if name is None else _contextthreads_attr(name, updated_node)

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> Union[
        cst.SimpleStatementLine, cst.FlattenSentinel[cst.SimpleStatementLine], cst.RemovalSentinel
    ]:
        body: list[cst.BaseSmallStatement] = []
        after: list[cst.SimpleStatementLine] = []
        changed = False
        for original, updated in zip(original_node.body, updated_node.body):
            new, extra = self._statement(original, updated)
            changed = changed or new is not updated or bool(extra)
            placement = (
                self.plan.placement.get(original)
                if isinstance(original, (cst.Import, cst.ImportFrom))
                else None
            )
            if placement == "replace":
                new = _import_contextthreads()
                changed = True
            if new is not None:
                body.append(new)
            after.extend(extra)
            if placement == "after":
                changed = True
                if len(original_node.body) > 1:
                    # On a line like "import threading; t = threading.Thread()"
                    # the name must be bound before the rest of the line runs.
                    body.append(_import_contextthreads())
                else:
                    after.append(cst.SimpleStatementLine(body=[_import_contextthreads()]))
        if not changed:
            return updated_node
        if not body:
            return cst.RemovalSentinel.REMOVE
        line = updated_node.with_changes(body=self._semicolons(body, updated_node))
        return cst.FlattenSentinel([line, *after]) if after else line

    @staticmethod
    def _semicolons(
        body: list[cst.BaseSmallStatement], like: cst.SimpleStatementLine
    ) -> list[cst.BaseSmallStatement]:
        fixed: list[cst.BaseSmallStatement] = []
        for index, statement in enumerate(body):
            last = index == len(body) - 1
            if last and not isinstance(like.body[-1].semicolon, cst.Semicolon):
                statement = statement.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
            elif not last and not isinstance(statement.semicolon, cst.Semicolon):
                statement = statement.with_changes(
                    semicolon=cst.Semicolon(
                        whitespace_before=cst.SimpleWhitespace(""),
                        whitespace_after=cst.SimpleWhitespace(" "),
                    )
                )
            fixed.append(statement)
        return fixed

    def _statement(
        self, original: cst.BaseSmallStatement, updated: cst.BaseSmallStatement
    ) -> tuple[Optional[cst.BaseSmallStatement], list[cst.SimpleStatementLine]]:
        """Return the statement's replacement (None: gone) and lines to add after it."""
        if isinstance(original, cst.ImportFrom) and isinstance(updated, cst.ImportFrom):
            moved = self.plan.moves.get(original, [])
            dropped = self.plan.drops.get(original, [])
            if not (moved or dropped) or isinstance(original.names, cst.ImportStar):
                return updated, []
            assert not isinstance(updated.names, cst.ImportStar)
            pairs = list(zip(original.names, updated.names))
            kept = [new for old, new in pairs if old not in moved and old not in dropped]
            going = [new for old, new in pairs if old in moved]
            if going:
                going, _ = _retail(going, list(updated.names), updated)
            if not going:
                if not kept:
                    return None, []
                kept, rest = _retail(kept, list(updated.names), updated)
                return rest.with_changes(names=kept), []
            to_contextthreads = updated.with_changes(
                module=cst.Name(_MODULE), names=going, semicolon=cst.MaybeSentinel.DEFAULT
            )
            if not kept:
                # Everything moves: only the module name changes, byte for byte.
                return (
                    to_contextthreads.with_changes(semicolon=updated.semicolon),
                    [],
                )
            kept, rest = _retail(kept, list(updated.names), updated)
            extra = [cst.SimpleStatementLine(body=[to_contextthreads])] if going else []
            return rest.with_changes(names=kept), extra
        if isinstance(original, cst.Import) and isinstance(updated, cst.Import):
            import_drops = self.plan.drops.get(original)
            if not import_drops:
                return updated, []
            pairs = list(zip(original.names, updated.names))
            kept_names = [new for old, new in pairs if old not in import_drops]
            if not kept_names:
                return None, []
            if kept_names[-1] is not updated.names[-1]:
                kept_names[-1] = kept_names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated.with_changes(names=kept_names), []
        return updated, []


def rewrite_module(module: cst.Module) -> cst.Module:
    """Return ``module`` rewritten to use contextthreads; the same object if nothing applies.

    Pure: call it from any thread.
    """
    wrapper = MetadataWrapper(module)
    analysis = _Analysis(wrapper)
    plan = analysis.plan
    if not (plan.uses or plan.moves or plan.anchors or plan.drops):
        return module
    rewriter = _Rewriter(plan)
    return wrapper.module.visit(rewriter)
