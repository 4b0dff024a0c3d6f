"""Reading our conditional parameters (``sweeper_if``): each condition, then the whole graph's checks."""

from __future__ import annotations

import difflib
from typing import Any

from sweeper.spec._checks import Checks, _join, _show
from sweeper.spec.laws import Condition, Parameter, value_key

# What a parent can be: a choice among values, or a constant.
_CONDITION_PARENTS = ("categorical", "constant")


class ConditionReader(Checks):
    """Reads `sweeper_if` conditions and checks them: known parents, values they can take, no cycles."""

    # (condition, where it is written, the name of the parameter or block that carries it)
    _conditions: list[tuple[Condition, str, str]]

    def condition(self, value: Any, path: str, names: tuple[str, ...]) -> tuple[Condition, ...]:
        block = self.mapping(
            value,
            path,
            "a mapping of parameter names to the values that make this one active, "
            "such as {optimizer: [sgd]}",
        )
        if block is None:
            return ()
        if not block:
            self.error(path, "must name at least one parameter, such as {optimizer: [sgd]}")
            return ()
        found = []
        for parent, values in block.items():
            where = _join(path, parent)
            if not isinstance(parent, str) or not parent:
                self.error(where, f"must be the dotted name of a parameter, got {_show(parent)}")
                continue
            if not isinstance(values, list) or not values:
                self.error(
                    where,
                    f"must be a non-empty list of the values of {parent} under which "
                    f"{'.'.join(names)} is active, got {_show(values)}",
                )
                continue
            condition = Condition(parent=parent, values=tuple(values))
            self._conditions.append((condition, where, ".".join(names)))
            found.append(condition)
        return tuple(found)

    def _check_conditions(self, parameters: tuple[Parameter, ...]) -> None:
        leaves = {p.name: p for p in parameters}
        sound: dict[str, set[str]] = {}  # child -> the parents of its conditions that name a sound parent
        for condition, where, owner in self._conditions:
            parent = leaves.get(condition.parent)
            if condition.parent == owner or condition.parent.startswith(owner + "."):
                what = "itself" if condition.parent == owner else f"its own parameter {condition.parent}"
                self.error(where, f"cannot make {owner} depend on {what}")
                continue
            if parent is None:
                if any(name.startswith(condition.parent + ".") for name in leaves):
                    hint = f"{condition.parent} is a block; name one of its parameters"
                else:
                    close = difflib.get_close_matches(condition.parent, list(leaves), n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(leaves))}"
                self.error(where, f"names no parameter of this sweep, got {condition.parent!r}; {hint}")
                continue
            if parent.distribution not in _CONDITION_PARENTS:
                self.error(
                    where,
                    f"must name a categorical or constant parameter (values: or value:), got "
                    f"{condition.parent} with distribution {parent.distribution}",
                )
                continue
            takes = parent.values if parent.distribution == "categorical" else (parent.value,)
            keys = {value_key(v) for v in takes}
            bad = False
            for i, item in enumerate(condition.values):
                if value_key(item) not in keys:
                    bad = True
                    self.error(
                        f"{where}.{i}",
                        f"is not a value {condition.parent} can take, got {_show(item)}; "
                        f"its values are {_show(list(takes))}",
                    )
            if not bad:
                for name, leaf in leaves.items():
                    if condition in leaf.when and (name == owner or name.startswith(owner + ".")):
                        sound.setdefault(name, set()).add(condition.parent)
        self._check_cycles(sound)

    def _check_cycles(self, parents: dict[str, set[str]]) -> None:
        seen_cycles: set[frozenset[str]] = set()
        sites = {(owner, c.parent): where for c, where, owner in self._conditions}

        def site(child: str, parent: str) -> str:
            # The condition may sit on an enclosing block: the innermost one that names this parent.
            parts = child.split(".")
            for end in range(len(parts), 0, -1):
                where = sites.get((".".join(parts[:end]), parent))
                if where is not None:
                    return where
            return "parameters"

        def visit(node: str, trail: list[str]) -> None:
            for parent in sorted(parents.get(node, ())):
                if parent in trail:
                    cycle = trail[trail.index(parent) :]
                    if frozenset(cycle) not in seen_cycles:
                        seen_cycles.add(frozenset(cycle))
                        shown = " -> ".join([*cycle, parent])
                        self.error(
                            site(node, parent),
                            f"makes a cycle of conditions ({shown}): each would be active only "
                            "when the next one is",
                        )
                    continue
                visit(parent, [*trail, parent])

        for child in sorted(parents):
            visit(child, [child])
