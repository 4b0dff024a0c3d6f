"""The search space: spec parameters as Optuna distributions, W&B's sampling laws and grid order.

Owner: spec issue (#2). This module's public surface is the contract the engine builds on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution

from sweeper.spec import Parameter


class SearchSpace:
    """The parameters of a sweep, seen by Optuna as flat dotted names."""

    def __init__(self, parameters: Sequence[Parameter]) -> None:
        self.parameters = tuple(parameters)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Optuna distributions of every non-constant parameter, by dotted name."""
        raise NotImplementedError

    def grid(self) -> list[dict[str, Any]]:
        """Every grid point (flat Optuna params) in W&B's order, duplicates collapsed."""
        raise NotImplementedError

    def sample(self, name: str, rng: np.random.Generator) -> Any:
        """One draw of parameter ``name`` from W&B's law, as the Optuna param value."""
        raise NotImplementedError

    def to_config(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The nested config the trainer receives: constants added, natural types, real objects."""
        raise NotImplementedError
