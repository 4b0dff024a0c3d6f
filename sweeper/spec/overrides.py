"""Config overrides: dotted config keys a trial sets on top of the config built from its params.

A trial's ``config_overrides`` user attr (:data:`sweeper.storage.attrs.CONFIG_OVERRIDES`) maps dotted keys
(``"seed"``, ``"optimizer.lr"``) to values. The agent applies them to the config it builds from the
trial's params before anything sees it, so the trainer (function or program), the trackers and the
stored ``config`` attr all hold the overridden config. ``sweeper repeat`` uses this to run one
trial's config with other seeds.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from sweeper.errors import UsageError


def check(overrides: Any) -> dict[str, Any]:
    """The overrides as a plain dict, after checking their form.

    Raises:
        UsageError: ``overrides`` is not a mapping of non-empty dotted keys (no empty parts).

    Example:
        >>> check({"optimizer.lr": 0.1})
        {'optimizer.lr': 0.1}
        >>> check({"a..b": 1})
        Traceback (most recent call last):
        ...
        sweeper.errors.UsageError: config override keys must be dotted names like 'optimizer.lr', got 'a..b'
    """
    if not isinstance(overrides, Mapping):
        raise UsageError(f"config overrides must be a mapping of dotted keys to values, got {overrides!r}")
    for key in overrides:
        if not isinstance(key, str) or not all(key.split(".")):
            raise UsageError(f"config override keys must be dotted names like 'optimizer.lr', got {key!r}")
    return dict(overrides)


def apply(config: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with each dotted key set to its override.

    An override replaces whatever its path held; missing mappings along the path are created, and
    a path through a non-mapping value replaces that value with a mapping.

    Example:
        >>> apply({"seed": 0, "model": {"depth": 2}}, {"seed": 3, "model.width": 8})
        {'seed': 3, 'model': {'depth': 2, 'width': 8}}
    """
    merged = copy.deepcopy(dict(config))
    for key, value in check(overrides).items():
        *parents, leaf = key.split(".")
        node = merged
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[leaf] = copy.deepcopy(value)
    return merged
