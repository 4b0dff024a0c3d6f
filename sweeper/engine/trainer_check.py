"""Checking a ``module:function`` trainer before Ray starts, without running the module.

A module of its own, importing neither Optuna nor Ray: ``sweeper run`` checks the trainer, then
starts Ray, then imports the rest (Optuna and NumPy: a quarter of a second) while Ray starts.
"""

from __future__ import annotations

from pathlib import Path

from sweeper.worker.trial import import_trainer


def check_trainer_module(path: str | None, project: Path) -> None:
    """Fail at once, before Ray starts, on a ``module:function`` trainer that cannot be right.

    The module is looked for and its source read, not run: a malformed path, a module that cannot
    be found, a source that does not parse or that binds no such name raise here, as
    :func:`~sweeper.worker.trial.import_trainer` raises. The import itself (seconds, for a trainer
    that imports torch) is left to :func:`~sweeper.engine.setup.trainer_target`, which runs while Ray starts.

    Raises:
        TrainerError: as :func:`~sweeper.worker.trial.import_trainer`.
    """
    import importlib.util
    import sys

    if path is None:
        return
    module, sep, attr = path.partition(":")
    entry = str(project)
    if entry not in sys.path:
        sys.path.insert(0, entry)  # as import_trainer does
    try:
        found = importlib.util.find_spec(module) if module and sep and attr else None
    except Exception:  # a parent package that is missing, or fails to import
        found = None
    if found is None or module in sys.modules or not _may_bind(found.origin, attr.split(".")[0]):
        import_trainer(path, project)  # imported already, or wrong: its own error, now


def _may_bind(origin: str | None, name: str) -> bool:
    """Whether the module's source may bind ``name`` (any doubt: yes); False when it cannot parse."""
    import ast

    if origin is None or not origin.endswith(".py"):
        return True
    try:
        tree = ast.parse(Path(origin).read_bytes())
    except SyntaxError:
        return False
    except (OSError, ValueError):
        return True
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in (name, "__getattr__"):
                return True
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            if node.id == name:
                return True
        elif isinstance(node, ast.alias):
            if node.name == "*" or (node.asname or node.name).split(".")[0] == name:
                return True
        elif isinstance(node, ast.Attribute) and node.attr in ("__dict__", "setattr"):
            return True  # bound in ways a reader cannot follow
        elif isinstance(node, ast.Name) and node.id in ("globals", "setattr", "exec"):
            return True
    return False
