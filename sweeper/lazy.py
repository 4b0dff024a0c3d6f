"""Names a package exports but imports on first access (PEP 562): importing the package stays cheap.

A trial's process imports ``sweeper`` and ``sweeper.spec.model``; what they export from modules
that import Optuna, Ray or the trackers is imported only when asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any


def attribute(package: str, modules: Mapping[str, str], name: str) -> Any:
    """``name`` from the module ``modules`` maps it to, for ``package``'s ``__getattr__``.

    Raises:
        AttributeError: ``package`` exports no such name.
    """
    module = modules.get(name)
    if module is None:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
