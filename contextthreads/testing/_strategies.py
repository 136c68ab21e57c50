"""Hypothesis strategies for ``ContextVar`` assignments and isolation scenarios.

Strategies only describe data: nothing here sets a variable or starts a thread.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hypothesis import strategies as st

from ._variables import checked_variables

__all__ = (
    "IsolationScenario",
    "SpawnStep",
    "SpawnerPlan",
    "context_assignments",
    "context_vars",
    "isolation_scenarios",
    "spawner_label",
)


def context_vars(
    *,
    min_size: int = 1,
    max_size: Optional[int] = None,
    variables: Optional[Sequence[ContextVar[Any]]] = None,
) -> st.SearchStrategy[tuple[ContextVar[Any], ...]]:
    """Draw a tuple of distinct ``ContextVar`` objects from a bounded pool.

    The pool is ``variables`` or, by default, ``VARIABLE_POOL``: six
    module-level variables named ``request_id``, ``tenant``, ``user``,
    ``trace_id``, ``locale`` and ``deadline``. Drawing never creates a
    variable, so examples do not grow the contexts they run in.

    Args:
        min_size: The fewest variables drawn.
        max_size: The most variables drawn; by default all of the pool.
        variables: The pool, distinct ``ContextVar``\\ s; by default
            ``VARIABLE_POOL``.

    Raises:
        ValueError: If ``variables`` is empty or repeats a variable
            (``TypeError`` if it holds something else).
    """
    pool = checked_variables(variables)
    upper = len(pool) if max_size is None else min(max_size, len(pool))
    return st.lists(st.sampled_from(pool), min_size=min_size, max_size=upper, unique=True).map(
        tuple
    )


def context_assignments(
    values: Optional[st.SearchStrategy[Any]] = None,
    *,
    min_size: int = 0,
    max_size: Optional[int] = None,
    variables: Optional[Sequence[ContextVar[Any]]] = None,
) -> st.SearchStrategy[dict[ContextVar[Any], Any]]:
    """Draw ``{ContextVar: value}``: what some code sets before it spawns work.

    Variables come from ``variables`` or ``VARIABLE_POOL`` (see
    ``context_vars()``); values from ``values``, by default short text and
    integers, which pickle, so the assignment can be sent to another process.
    Apply one with ``for var, value in assignment.items(): var.set(value)``.

    Args:
        values: The strategy for the values; by default short text and
            integers.
        min_size: The fewest variables assigned.
        max_size: The most variables assigned; by default all of the pool.
        variables: The pool, distinct ``ContextVar``\\ s; by default
            ``VARIABLE_POOL``.

    Raises:
        ValueError: If ``variables`` is empty or repeats a variable
            (``TypeError`` if it holds something else).
    """
    pool = checked_variables(variables)
    upper = len(pool) if max_size is None else min(max_size, len(pool))
    value_strategy: st.SearchStrategy[Any] = (
        st.one_of(st.text(max_size=8), st.integers()) if values is None else values
    )
    return st.dictionaries(st.sampled_from(pool), value_strategy, min_size=min_size, max_size=upper)


@dataclass(frozen=True)
class SpawnStep:
    """One ``spawn()`` call: what the spawner sets first, what the spawned code writes.

    Both are indices into ``IsolationScenario.variables``. The values are
    made by the checker and are unique, so a wrong value says where it came
    from: the spawner sets ``'A2'`` before spawner A's spawn #2, and the code
    spawned there writes ``'written-in-A2'``.

    Attributes:
        sets: The variables the spawner sets just before this ``spawn()``.
        writes: The variables the spawned code writes.
    """

    sets: tuple[int, ...]
    writes: tuple[int, ...]


@dataclass(frozen=True)
class SpawnerPlan:
    """What one spawner thread does: its ``spawn()`` calls, in order.

    Attributes:
        steps: The calls, at least one.
    """

    steps: tuple[SpawnStep, ...]


@dataclass(frozen=True)
class IsolationScenario:
    """Spawner threads that set variables and call ``spawn()`` at the same time.

    Each spawner starts in an empty context; all of them are released together
    by a ``Barrier``. ``describe()`` tells the scenario in words. Draw them
    with ``isolation_scenarios()``; immutable.

    Attributes:
        variables: The ``ContextVar``\\ s the steps' indices refer to.
        spawners: One plan per spawner thread.
    """

    variables: tuple[ContextVar[Any], ...]
    spawners: tuple[SpawnerPlan, ...]

    def describe(self) -> str:
        """Return the scenario as one line per spawner, as the checker's messages tell it."""
        lines = []
        for s_index, plan in enumerate(self.spawners):
            label = spawner_label(s_index)
            actions = []
            for k, step in enumerate(plan.steps):
                value = f"{label}{k + 1}"
                if step.sets:
                    assigned = (f"{self.variables[i].name}={value!r}" for i in step.sets)
                    actions.append("set " + ", ".join(assigned))
                spawned = f"spawn #{k + 1}"
                if step.writes:
                    written = ", ".join(self.variables[i].name for i in step.writes)
                    spawned += f" (spawned code writes {written})"
                actions.append(spawned)
            lines.append(f"spawner {label}: " + "; ".join(actions))
        return "\n".join(lines)

    def __repr__(self) -> str:
        names = ", ".join(var.name for var in self.variables)
        body = self.describe().replace("\n", " | ")
        return f"<IsolationScenario over {names}: {body}>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Hypothesis prints falsifying examples with its pretty-printer, which
        # would otherwise spell out every field and ContextVar address.
        printer.text(repr(self))


def spawner_label(index: int) -> str:
    """Return the letter the checker's messages use for spawner ``index``."""
    return chr(ord("A") + index) if index < 26 else f"S{index}"


def isolation_scenarios(
    variables: Optional[Sequence[ContextVar[Any]]] = None,
    *,
    max_spawners: int = 3,
    max_spawns: int = 3,
) -> st.SearchStrategy[IsolationScenario]:
    """Draw an ``IsolationScenario`` for ``assert_context_isolation()``.

    Up to ``max_spawners`` threads each call ``spawn()`` up to ``max_spawns``
    times, setting some of ``variables`` before each call; the spawned code
    writes some of them. Hypothesis shrinks towards one spawner, one spawn
    and one variable.

    Args:
        variables: The ``ContextVar``\\ s to use, distinct and at least one; by
            default ``VARIABLE_POOL``.
        max_spawners: The most spawner threads, at least 1.
        max_spawns: The most ``spawn()`` calls per spawner, at least 1.

    Raises:
        ValueError: If a maximum is below 1, or ``variables`` is empty or
            repeats a variable (``TypeError`` if it holds something else).
    """
    pool = checked_variables(variables)
    if max_spawners < 1 or max_spawns < 1:
        raise ValueError("max_spawners and max_spawns must be at least 1")
    indices = st.lists(st.integers(0, len(pool) - 1), unique=True, max_size=len(pool)).map(
        lambda drawn: tuple(sorted(drawn))
    )
    step = st.builds(SpawnStep, sets=indices, writes=indices)
    plan = st.builds(SpawnerPlan, steps=st.lists(step, min_size=1, max_size=max_spawns).map(tuple))
    return st.builds(
        IsolationScenario,
        variables=st.just(pool),
        spawners=st.lists(plan, min_size=1, max_size=max_spawners).map(tuple),
    )
