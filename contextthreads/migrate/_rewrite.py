"""Rewrite one module's source so its threads and thread pools come from contextthreads.

Works on libcst's concrete syntax tree, so everything not rewritten keeps its
exact bytes: comments, strings, formatting, line endings, encoding. What
changes is decided in ``_rule``; where new imports go, in ``_imports``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Optional, Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper

from ._imports import Fate, arrange, import_line, is_import_line
from ._problems import UnsafeRewrite
from ._rule import MODULE, Plan, Statement, analyse

__all__ = ("rewrite_module",)

_MAX_LINE = 88  # ruff's and black's default: a merged import longer than this is wrapped


@dataclass(frozen=True)
class _Piece:
    """Aliases one import statement gives up to ``from contextthreads import``."""

    statement: cst.ImportFrom  # the statement as rewritten, for its shape
    going: list[cst.ImportAlias]
    whole: bool  # every alias goes: the statement moves as it is


def _contextthreads_attr(name: str, like: cst.BaseExpression) -> cst.Attribute:
    return cst.Attribute(
        value=cst.Name(MODULE), attr=cst.Name(name), lpar=like.lpar, rpar=like.rpar
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


def _member_key(alias: cst.ImportAlias) -> tuple[object, ...]:
    # ruff's and isort's order-by-type: CONSTANTS, then Classes, then the rest.
    name = cst.Module([]).code_for_node(alias.name)
    kind = 0 if name.isupper() and len(name) > 1 else 1 if name[:1].isupper() else 2
    asname = alias.asname.name if alias.asname is not None else None
    return (kind, name.lower(), name, cst.Module([]).code_for_node(asname) if asname else "")


def _comment(ws: object) -> Optional[str]:
    if isinstance(ws, cst.ParenthesizedWhitespace) and ws.first_line.comment is not None:
        return ws.first_line.comment.value
    return None


class _Rewriter(cst.CSTTransformer):
    """Apply a ``Plan``: rewrite the chosen uses and imports, touch nothing else."""

    def __init__(self, plan: Plan, module: cst.Module, first_party: Collection[str]) -> None:
        super().__init__()
        self.plan = plan
        self.module = module
        self.first_party = first_party
        self.fates: dict[cst.BaseStatement, Fate] = {}
        self.pieces: dict[cst.BaseStatement, list[_Piece]] = {}
        self.line_of: dict[Statement, cst.BaseStatement] = {}
        self.binds = set(plan.binds.values())

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.BaseExpression:
        name = self.plan.uses.get(original_node)
        return updated_node if name is None else _contextthreads_attr(name, updated_node)

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        name = self.plan.uses.get(original_node)
        return updated_node if name is None else _contextthreads_attr(name, updated_node)

    # --- import lines ------------------------------------------------------------

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine:
        inline = not is_import_line(original_node)
        body: list[cst.BaseSmallStatement] = []
        pieces: list[_Piece] = []
        changed = False
        for original, updated in zip(original_node.body, updated_node.body):
            new, piece = self._statement(original, updated)
            changed = changed or new is not updated or piece is not None
            if new is not None:
                body.append(new)
            if piece is not None:
                if inline:
                    body.append(self._shaped(piece))
                else:
                    pieces.append(piece)
            if inline and original in self.binds:
                # On a line like "import threading; t = threading.Thread()" the
                # name must be bound before the rest of the line runs.
                body.append(import_line(MODULE).body[0])
                changed = True
        if not changed:
            line = updated_node
        elif body:
            line = updated_node.with_changes(body=self._semicolons(body, updated_node))
        else:
            # Emptied: the block decides where its blank lines and comments go.
            line = updated_node
            only = pieces[0] if len(pieces) == 1 and len(updated_node.body) == 1 else None
            moved = None
            if only is not None and only.whole:
                moved = updated_node.with_changes(
                    body=[only.statement.with_changes(module=cst.Name(MODULE))]
                )
            self.fates[line] = Fate(commented=self._has_comments(updated_node), moved=moved)
        if pieces:
            self.pieces[line] = pieces
        for original in original_node.body:
            if isinstance(original, (cst.Import, cst.ImportFrom)):
                self.line_of[original] = line
        return line

    @staticmethod
    def _has_comments(line: cst.SimpleStatementLine) -> bool:
        return line.trailing_whitespace.comment is not None or any(
            empty.comment is not None for empty in line.leading_lines
        )

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
    ) -> tuple[Optional[cst.BaseSmallStatement], Optional[_Piece]]:
        """Return the statement's replacement (None: gone) and what it gives up."""
        if isinstance(original, cst.ImportFrom) and isinstance(updated, cst.ImportFrom):
            moved = self.plan.moves.get(original, [])
            dropped = self.plan.drops.get(original, [])
            if not (moved or dropped) or isinstance(original.names, cst.ImportStar):
                return updated, None
            assert not isinstance(updated.names, cst.ImportStar)
            pairs = list(zip(original.names, updated.names))
            kept = [new for old, new in pairs if old not in moved and old not in dropped]
            going = [new for old, new in pairs if old in moved]
            piece = None
            if going:
                piece = _Piece(updated, going, whole=len(going) == len(pairs))
            if not kept:
                return None, piece
            kept, rest = _retail(kept, list(updated.names), updated)
            return rest.with_changes(names=kept), piece
        if isinstance(original, cst.Import) and isinstance(updated, cst.Import):
            import_drops = self.plan.drops.get(original)
            if not import_drops:
                return updated, None
            pairs = list(zip(original.names, updated.names))
            kept_names = [new for old, new in pairs if old not in import_drops]
            if not kept_names:
                return None, None
            if kept_names[-1] is not updated.names[-1]:
                kept_names[-1] = kept_names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated.with_changes(names=kept_names), None
        return updated, None

    def _shaped(self, piece: _Piece) -> cst.ImportFrom:
        """Return ``from contextthreads import`` the piece's aliases, in its statement's shape."""
        statement = piece.statement
        assert not isinstance(statement.names, cst.ImportStar)
        going = piece.going
        if not piece.whole:
            going, _ = _retail(going, list(statement.names), statement)
        return statement.with_changes(
            module=cst.Name(MODULE), names=going, semicolon=cst.MaybeSentinel.DEFAULT
        )

    def _moved_from(
        self, lines: Sequence[cst.BaseStatement], existing: Optional[cst.SimpleStatementLine]
    ) -> Optional[cst.SimpleStatementLine]:
        pieces = [piece for line in lines for piece in self.pieces.get(line, [])]
        if not pieces:
            return None
        if existing is None and len(pieces) == 1:
            piece = pieces[0]
            for line in lines:
                fate = self.fates.get(line)
                if fate is not None and fate.moved is not None and self.pieces.get(line) == pieces:
                    return fate.moved
            return cst.SimpleStatementLine(body=[self._shaped(piece)])
        # Several statements give names up, or one import from contextthreads
        # is there already: one sorted statement holds them all, comments kept.
        aliases: list[tuple[cst.ImportAlias, Optional[str]]] = []
        heads: list[str] = []
        sources = [(p.statement, p.going) for p in pieces]
        if existing is not None:
            statement = existing.body[0]
            assert isinstance(statement, cst.ImportFrom)
            assert not isinstance(statement.names, cst.ImportStar)
            sources.insert(0, (statement, list(statement.names)))
        for statement, going in sources:
            if statement.lpar is not None:
                head = _comment(statement.lpar.whitespace_after)
                if head is not None:
                    heads.append(head)
            assert not isinstance(statement.names, cst.ImportStar)
            for alias in going:
                note = (
                    _comment(alias.comma.whitespace_after)
                    if isinstance(alias.comma, cst.Comma)
                    else None
                )
                if alias is statement.names[-1] and statement.rpar is not None:
                    note = note or _comment(statement.rpar.whitespace_before)
                aliases.append((alias, note))
        return self._from_line(aliases, heads)

    def _from_line(
        self, aliases: list[tuple[cst.ImportAlias, Optional[str]]], heads: list[str]
    ) -> cst.SimpleStatementLine:
        code = cst.Module([]).code_for_node
        entries: dict[str, Optional[str]] = {}
        for alias, note in sorted(aliases, key=lambda pair: _member_key(pair[0])):
            text = code(alias.with_changes(comma=cst.MaybeSentinel.DEFAULT)).strip()
            entries[text] = entries.get(text) or note
        newline, indent = self.module.default_newline, self.module.default_indent
        one = f"from {MODULE} import {', '.join(entries)}"
        if not heads and not any(entries.values()) and len(one) <= _MAX_LINE:
            text = one + newline
        else:
            lines = [f"from {MODULE} import (" + "".join(f"  {h}" for h in heads)]
            lines += [f"{indent}{t},{f'  {n}' if n else ''}" for t, n in entries.items()]
            text = newline.join([*lines, ")", ""])
        line = cst.parse_statement(text, config=self.module.config_for_parsing)
        assert isinstance(line, cst.SimpleStatementLine)
        return line

    # --- blocks --------------------------------------------------------------------

    def _arranged(
        self, original: cst.CSTNode, body: Sequence[cst.BaseStatement]
    ) -> Optional[list[cst.BaseStatement]]:
        statement = self.plan.binds.get(original)
        bind_at = self.line_of.get(statement) if statement is not None else None
        if bind_at is None and not any(line in self.fates or line in self.pieces for line in body):
            return None
        return arrange(
            body,
            fates=self.fates,
            giving=self.pieces,
            bind_at=bind_at,
            bind=import_line(MODULE) if bind_at is not None else None,
            moved_from=self._moved_from,
            first_party=self.first_party,
        )

    def leave_IndentedBlock(
        self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock
    ) -> cst.IndentedBlock:
        body = self._arranged(original_node, updated_node.body)
        return updated_node if body is None else updated_node.with_changes(body=body)

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        body = self._arranged(original_node, updated_node.body)
        return updated_node if body is None else updated_node.with_changes(body=body)


def rewrite_module(module: cst.Module, first_party: Collection[str] = ()) -> cst.Module:
    """Return ``module`` rewritten to use contextthreads; the same object if nothing applies.

    ``first_party`` names the project's own top-level packages, whose imports
    sort after third-party ones. Raises ``UnsafeRewrite`` for a module that
    cannot be rewritten without changing its meaning. Pure: call it from any thread.
    """
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    plan, problems = analyse(wrapper)
    if problems:
        raise UnsafeRewrite(problems)
    if not plan:
        return module
    return module.visit(_Rewriter(plan, module, first_party))
