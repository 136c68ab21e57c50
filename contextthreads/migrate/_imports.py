"""Put new imports where isort and ruff put them, and take emptied ones out cleanly.

A block's contiguous import lines are one group, ordered in sections
(``__future__``, standard library, third party, first party, relative) split
by one blank line; inside a section, ``import x`` lines come before
``from x import y`` ones (unless the file interleaves them), each sorted by
module name. A new line joins its section at its sorted place, or opens the
section after the last lower one. A removed line leaves the blank lines that
separated sections behind, so sections stay apart.
"""

from __future__ import annotations

import functools
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Optional, Sequence, Union, cast

import libcst as cst

__all__ = ("Fate", "arrange", "import_line", "is_import_line")

FUTURE, STDLIB, THIRD, FIRST, LOCAL = range(5)

Item = Union[cst.BaseStatement, "_Gone"]
#: Builds the "from contextthreads import ..." line for a group's moves, merged
#: into the group's existing one if given; None when nothing moves there.
MovedFrom = Callable[
    [Sequence[cst.BaseStatement], Optional[cst.SimpleStatementLine]],
    Optional[cst.SimpleStatementLine],
]


@dataclass(frozen=True)
class Fate:
    """What becomes of an import line: dropped (emptied), or moved whole to ``moved``."""

    commented: bool = False
    moved: Optional[cst.SimpleStatementLine] = None


@dataclass(frozen=True)
class _Gone:
    """Where a removed line was, and how many blank lines led it."""

    blank: int
    line: cst.BaseStatement


@functools.cache
def _stdlib() -> frozenset[str]:
    names = getattr(sys, "stdlib_module_names", None)
    if names is not None:
        return frozenset(names)
    # Python 3.9 has no list: read the standard library's own directories.
    found = set(sys.builtin_module_names)
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib"):
        for directory in (paths[key], os.path.join(paths[key], "lib-dynload")):
            try:
                entries = os.listdir(directory)
            except OSError:
                continue
            for entry in entries:
                if entry != "site-packages":
                    found.add(entry.split(".", 1)[0])
    return frozenset(found)


def _section(module: str, relative: int, first_party: Collection[str]) -> int:
    if relative:
        return LOCAL
    top = module.split(".", 1)[0]
    if top == "__future__":
        return FUTURE
    if top in first_party:
        return FIRST
    return STDLIB if top in _stdlib() else THIRD


def is_import_line(node: object) -> bool:
    """Return True for a line of only import statements."""
    return isinstance(node, cst.SimpleStatementLine) and all(
        isinstance(s, (cst.Import, cst.ImportFrom)) for s in node.body
    )


def _describe(line: cst.BaseStatement) -> tuple[bool, str, int]:
    """Return (straight ``import``, module name, relative level) of an import line."""
    assert isinstance(line, cst.SimpleStatementLine)
    statement = line.body[0]
    if isinstance(statement, cst.Import):
        return True, _dotted(statement.names[0].name), 0
    assert isinstance(statement, cst.ImportFrom)
    module = _dotted(statement.module) if statement.module is not None else ""
    return False, module, len(statement.relative)


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Name):
        return node.value
    assert isinstance(node, cst.Attribute)
    return f"{_dotted(node.value)}.{node.attr.value}"


def import_line(module: str) -> cst.SimpleStatementLine:
    """Return the line ``import <module>``."""
    return cst.SimpleStatementLine(
        body=[cst.Import(names=[cst.ImportAlias(name=cst.Name(module))])]
    )


def _blank(line: Item) -> int:
    if isinstance(line, _Gone):
        return line.blank
    count = 0
    for empty in getattr(line, "leading_lines", ()):
        if empty.comment is not None:
            break
        count += 1
    return count


def _with_blank(line: cst.BaseStatement, blank: int) -> cst.BaseStatement:
    leading = getattr(line, "leading_lines", None)
    if leading is None or _blank(line) == blank:
        return line
    rest = list(leading[_blank(line) :])
    return line.with_changes(leading_lines=[cst.EmptyLine(indent=False)] * blank + rest)


class _Group:
    """One group's lines, with helpers to insert a new one in sorted order."""

    def __init__(self, items: list[Item], first_party: Collection[str]) -> None:
        self.items = items
        self.first_party = first_party

    def _info(self, line: cst.BaseStatement) -> tuple[int, bool, str]:
        straight, module, relative = _describe(line)
        return _section(module, relative, self.first_party), straight, module.lower()

    def _key(self, line: cst.BaseStatement, interleaved: bool) -> tuple[object, ...]:
        _, straight, module = self._info(line)
        return (module,) if interleaved else (not straight, module)

    def insert(self, new: cst.SimpleStatementLine) -> None:
        section = self._info(new)[0]
        real = [i for i, item in enumerate(self.items) if not isinstance(item, _Gone)]
        same = [i for i in real if self._info(self._line(i))[0] == section]
        if same:
            lines = [self._line(i) for i in same]
            froms = [not self._info(line)[1] for line in lines]
            interleaved = any(f and not later for n, f in enumerate(froms) for later in froms[n:])
            key = self._key(new, interleaved)
            after = [i for i in same if self._key(self._line(i), interleaved) > key]
            if after:
                self._before(after[0], new, same_section=True)
            else:
                self._after(same[-1], new, blank=0)
            return
        lower = [i for i in real if self._info(self._line(i))[0] < section]
        if lower:
            self._after(lower[-1], new, blank=1)
        elif real:
            self._before(real[0], new, same_section=False)
        else:
            self.items.append(new)

    def _line(self, index: int) -> cst.BaseStatement:
        item = self.items[index]
        assert not isinstance(item, _Gone)
        return item

    def _before(self, index: int, new: cst.SimpleStatementLine, *, same_section: bool) -> None:
        old = self._line(index)
        self.items[index] = _with_blank(old, 0 if same_section else 1)
        self.items.insert(index, _with_blank(new, _blank(old)))

    def _after(self, index: int, new: cst.SimpleStatementLine, *, blank: int) -> None:
        self.items.insert(index + 1, _with_blank(new, blank))


def _groups(body: Sequence[cst.BaseStatement]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start: Optional[int] = None
    for index, node in enumerate([*body, None]):
        if node is not None and is_import_line(node):
            if start is None:
                start = index
        elif start is not None:
            spans.append((start, index))
            start = None
    return spans


def arrange(
    body: Sequence[cst.BaseStatement],
    *,
    fates: dict[cst.BaseStatement, Fate],
    giving: Collection[cst.BaseStatement],
    bind_at: Optional[cst.BaseStatement],
    bind: Optional[cst.SimpleStatementLine],
    moved_from: MovedFrom,
    first_party: Collection[str],
) -> list[cst.BaseStatement]:
    """Return ``body`` with its emptied and moved imports out, and the new lines in.

    ``giving`` are the lines that give names up to contextthreads.
    ``bind`` (``import contextthreads``) goes into the group holding
    ``bind_at``; ``moved_from(lines, existing)`` returns the
    ``from contextthreads import ...`` line for the moves out of ``lines``
    (merged with ``existing``, a line already importing from contextthreads),
    or None.
    """
    items: list[Item] = []
    done = 0
    for start, stop in _groups(body):
        items.extend(body[done:start])
        lines = body[start:stop]
        if bind_at in lines or any(line in fates or line in giving for line in lines):
            bound = bind if bind_at in lines else None
            items.extend(_arrange_group(lines, fates, bound, moved_from, first_party))
        else:
            items.extend(lines)
        done = stop
    items.extend(body[done:])
    return _close_gaps(items)


def _keeps_comment(fate: Fate) -> bool:
    return fate.commented and fate.moved is None


def _existing_from(
    lines: Iterable[cst.BaseStatement], fates: dict[cst.BaseStatement, Fate]
) -> Optional[cst.SimpleStatementLine]:
    for line in lines:
        if line in fates or not isinstance(line, cst.SimpleStatementLine) or len(line.body) != 1:
            continue
        statement = line.body[0]
        if (
            isinstance(statement, cst.ImportFrom)
            and not statement.relative
            and statement.module is not None
            and _dotted(statement.module) == "contextthreads"
            and not isinstance(statement.names, cst.ImportStar)
        ):
            return line
    return None


def _arrange_group(
    lines: Sequence[cst.BaseStatement],
    fates: dict[cst.BaseStatement, Fate],
    bind: Optional[cst.SimpleStatementLine],
    moved_from: MovedFrom,
    first_party: Collection[str],
) -> list[Item]:
    kept = [line for line in lines if line not in fates]
    if kept:
        # An unused import whose line carries a comment stays, comment and all.
        kept += [line for line in lines if line in fates and _keeps_comment(fates[line])]
    existing = _existing_from(kept, fates)
    from_line = moved_from(lines, existing)
    new = [line for line in (bind, from_line) if line is not None]
    items: list[Item] = []
    if not kept:
        # Nothing of the group is left: the new lines take its first line's place.
        first = lines[0]
        for line in lines:
            if line is first and new:
                head = new[0]
                if fates[line].moved is None:
                    assert isinstance(line, cst.SimpleStatementLine)
                    head = head.with_changes(
                        leading_lines=line.leading_lines,
                        trailing_whitespace=line.trailing_whitespace,
                    )
                else:
                    head = cast(cst.SimpleStatementLine, _with_blank(head, _blank(line)))
                items.append(head)
                items.extend(new[1:])
            elif (line is not first or not new) and _keeps_comment(fates[line]):
                items.append(line)
            else:
                items.append(_Gone(_blank(line), line))
        return items
    for line in lines:
        if line in kept:
            items.append(line)
        else:
            items.append(_Gone(_blank(line), line))
    group = _Group(items, first_party)
    if existing is not None and from_line is not None:
        index = group.items.index(existing)
        group.items[index] = from_line.with_changes(
            leading_lines=existing.leading_lines, trailing_whitespace=existing.trailing_whitespace
        )
        new = [line for line in new if line is not from_line]
    for line in new:
        group.insert(line)
    return group.items


def _close_gaps(items: list[Item]) -> list[cst.BaseStatement]:
    """Drop the removed lines, handing their blank lines on to the next statement."""
    out: list[cst.BaseStatement] = []
    pending: Optional[int] = None
    first_gone: Optional[_Gone] = None
    for item in items:
        if isinstance(item, _Gone):
            first_gone = first_gone or item
            pending = (
                item.blank if pending is None else max(pending, item.blank) if out else pending
            )
            continue
        if pending is not None:
            item = _with_blank(item, max(_blank(item), pending) if out else pending)
            pending = None
        out.append(item)
    if not out and first_gone is not None:
        out.append(first_gone.line)  # an emptied block would not parse: keep the import
    return out
