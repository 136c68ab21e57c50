"""Hypothesis strategies shared by the whole test suite, and the helpers to read them.

Everything draws its variables from ``POOL``, a fixed set of module-level
``ContextVar`` objects: a ``Context`` keeps a strong reference to every
variable ever set in it, so variables must not be created per example.

- ``values()``: values of mixed types to put in a variable.
- ``assignments()``: a random ``{ContextVar: value}`` mapping over ``POOL``.
- ``spawn_trees()``: trees of nested spawns over ``MECHANISMS`` (``Spawn``).
- ``snapshot()`` / ``apply()`` / ``applied()``: read, write and predict what a
  context holds, comparing values by type as well as equality (so ``1`` and
  ``True`` differ).

Tests run each example in a fresh ``contextvars.Context()`` so that examples do
not see each other's values. Nothing here starts threads: ``spawning.py`` runs
spawn trees through the real mechanisms.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Tuple

from hypothesis import strategies as st

POOL_SIZE = 6
POOL: tuple[contextvars.ContextVar[Any], ...] = tuple(
    contextvars.ContextVar(f"pool_{index}") for index in range(POOL_SIZE)
)

#: The ways work reaches another thread, as ``Spawn.mechanism`` names them.
MECHANISMS = ("thread", "timer", "submit", "map", "bind")

#: Mechanisms that capture the context when the work is prepared (``bind()``)
#: rather than when it is launched (``start()``, ``submit()``, ``map()``).
CAPTURED_AT_PREPARE = frozenset({"bind"})

#: What ``snapshot()`` returns: variable name -> (type, value), unset variables left out.
Snapshot = Dict[str, Tuple[type, Any]]
#: What ``assignments()`` draws: the values to set, by variable.
Assignment = Mapping["contextvars.ContextVar[Any]", Any]

_UNSET = object()


def values() -> st.SearchStrategy[Any]:
    """Draw a value to store in a ContextVar: scalars, text, bytes, small containers."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=8),
        st.binary(max_size=8),
        st.tuples(st.integers(), st.text(max_size=3)),
        st.frozensets(st.integers(), max_size=3),
    )


def variables(min_size: int = 1, max_size: int = POOL_SIZE) -> st.SearchStrategy[list[Any]]:
    """Draw a list of distinct ContextVars from ``POOL``."""
    return st.lists(st.sampled_from(POOL), min_size=min_size, max_size=max_size, unique=True)


def assignments(min_size: int = 0, max_size: int = POOL_SIZE) -> st.SearchStrategy[Assignment]:
    """Draw ``{ContextVar: value}`` over ``POOL``: what some code sets before or while it runs."""
    return st.dictionaries(
        st.sampled_from(POOL), values(), min_size=min_size, max_size=min(max_size, POOL_SIZE)
    )


def snapshot(pool: Iterable[contextvars.ContextVar[Any]] = POOL) -> Snapshot:
    """Return what the current context holds for ``pool``: name -> (type, value)."""
    seen: Snapshot = {}
    for var in pool:
        value = var.get(_UNSET)
        if value is not _UNSET:
            seen[var.name] = (type(value), value)
    return seen


def apply(assignment: Assignment) -> None:
    """Set every variable of ``assignment`` in the current context."""
    for var, value in assignment.items():
        var.set(value)


def applied(before: Snapshot, assignment: Assignment) -> Snapshot:
    """Return the snapshot ``before`` would become after ``apply(assignment)``."""
    after = dict(before)
    after.update({var.name: (type(value), value) for var, value in assignment.items()})
    return after


@dataclass(frozen=True)
class Spawn:
    """One child in a tree of spawns, and what its parent and it set around it.

    The parent sets ``before_prepare``, prepares the work (builds the Thread or
    Timer, or calls ``bind()``), sets ``before_launch``, then launches it
    (``start()``, ``submit()``, ``map()``, or calls the bound callable). The
    child must see the parent's values as they were at the capture point
    (``CAPTURED_AT_PREPARE`` or launch). It then sets ``writes`` and spawns
    ``children`` the same way; none of its writes may reach its parent or its
    siblings.
    """

    mechanism: str
    before_prepare: Assignment
    before_launch: Assignment
    writes: Assignment
    children: tuple[Spawn, ...]


def spawns(
    depth: int = 2, max_children: int = 2, mechanisms: Iterable[str] = MECHANISMS
) -> st.SearchStrategy[Spawn]:
    """Draw one ``Spawn`` whose subtree is at most ``depth`` levels below it."""
    mechanism_names = tuple(mechanisms)
    children: st.SearchStrategy[tuple[Spawn, ...]] = (
        st.just(())
        if depth <= 0
        else st.lists(spawns(depth - 1, max_children, mechanism_names), max_size=max_children).map(
            tuple
        )
    )
    return st.builds(
        Spawn,
        mechanism=st.sampled_from(mechanism_names),
        before_prepare=assignments(max_size=2),
        before_launch=assignments(max_size=2),
        writes=assignments(max_size=3),
        children=children,
    )


def spawn_trees(
    depth: int = 3, max_children: int = 2, mechanisms: Iterable[str] = MECHANISMS
) -> st.SearchStrategy[tuple[Spawn, ...]]:
    """Draw the children of a root (the test itself): at most ``depth`` levels of spawns.

    The tree has at most ``max_children + max_children**2 + ...`` spawns in
    all (14 with the defaults); ``count_spawns()`` sizes pools from it.
    """
    return st.lists(
        spawns(depth - 1, max_children, mechanisms), min_size=1, max_size=max_children
    ).map(tuple)


def count_spawns(tree: Iterable[Spawn]) -> int:
    """Return how many spawns ``tree`` holds, at every level."""
    return sum(1 + count_spawns(spawn.children) for spawn in tree)
