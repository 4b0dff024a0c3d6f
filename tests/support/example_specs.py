"""The feature specs in sweeps/ that the example tests own (grid/random/bayes belong to the spec tests)."""

from __future__ import annotations

EXAMPLE_SPECS = (
    "quickstart",
    "hyperband",
    "asha",
    "multi_objective",
    "nested",
    "fractional_gpus",
    "program",
    "trackers",
    "digits",
    "custom_optuna",
    "wandb_tutorial",
    "conditional",
    "warm_start",
)
