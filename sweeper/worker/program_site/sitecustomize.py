"""Loaded at start-up by every Python process a program trial starts (first on its ``PYTHONPATH``).

When the process holds an agent's channel (``SWEEPER_CHANNEL``), importing ``wandb`` installs the
W&B bridge (:func:`sweeper.worker.wandb_bridge.install_in_program`), so that an unmodified
``wandb.init()`` / ``wandb.log()`` reports to the trial. Nothing is imported before the program
imports wandb. Then the ``sitecustomize`` this module hides (the user's, or the environment's), if
any, runs as it would have.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


class _WandbLoader(importlib.abc.Loader):
    """wandb's own loader, then the bridge."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._inner.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        try:
            from sweeper.worker.wandb_bridge import install_in_program
        except ImportError:  # sweeper is not importable here: the program runs as under W&B
            return
        install_in_program(module)

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: wandb's loader
        return getattr(self._inner, name)


class _WandbFinder(importlib.abc.MetaPathFinder):
    """Finds ``wandb`` as the other finders do, with :class:`_WandbLoader` around its loader."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "wandb":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # once, and no recursion into ourselves
        spec = importlib.util.find_spec("wandb")
        if spec is not None and spec.loader is not None:
            spec.loader = _WandbLoader(spec.loader)
        return spec


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path, which this one hides."""
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


if os.environ.get("SWEEPER_CHANNEL") and "wandb" not in sys.modules:
    sys.meta_path.insert(0, _WandbFinder())
_chain()
