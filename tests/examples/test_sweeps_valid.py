"""Every example spec parses, shows the feature it is named after, and fits the trainer it names.

The configs a spec can produce are checked against the trainer's own validation, so a typo in a
parameter name fails here rather than in every trial of a user's first sweep.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from example_specs import EXAMPLE_SPECS

from sweeper.search.custom import draw_configs
from sweeper.search.strategy import plan_search
from sweeper.spec.model import SweepSpec
from sweeper.spec.reader import load_spec
from sweeper.worker.trial import load_trainer
from trainers import boosting, digits, forest, wandb_tutorial

REPO = Path(__file__).resolve().parents[2]
SWEEPS = REPO / "sweeps"
OURS = list(EXAMPLE_SPECS)
CONFIG_CHECKS = {
    "trainers.boosting:train": boosting.settings,
    "trainers.digits:train": digits.settings,
    "trainers.forest:train": forest.settings,
    "trainers.wandb_tutorial:train_sweep": wandb_tutorial.check_config,
}


def spec(name: str) -> SweepSpec:
    return load_spec(SWEEPS / f"{name}.yaml")


@pytest.mark.parametrize("name", OURS)
def test_example_spec_is_valid_and_runnable_as_written(name: str) -> None:
    loaded = spec(name)
    assert loaded.objectives, "an example sweep must say what it optimises"
    assert loaded.name and loaded.description
    if loaded.program is not None:
        assert (REPO / loaded.program).is_file()
        assert loaded.sweeper.trainer is None
    else:
        assert callable(load_trainer(str(loaded.sweeper.trainer)))


@pytest.mark.parametrize("name", [n for n in OURS if n != "program"])
def test_every_config_the_spec_can_produce_is_one_its_trainer_accepts(name: str, make_trial) -> None:
    loaded = spec(name)
    trainer = str(loaded.sweeper.trainer)
    # The ML trainers validate their config up front; the test functions are instant, so just run them.
    check = CONFIG_CHECKS.get(trainer) or (lambda config: load_trainer(trainer)(config, make_trial()))
    if loaded.defines_space_by_run:
        # The scheduler's own search space, as its sampler draws it (every branch shows in 20 draws).
        scheduler = plan_search(loaded, REPO).scheduler
        assert scheduler is not None
        for config in draw_configs(scheduler, loaded, 20):
            check(config)
        return
    rng = np.random.default_rng(0)
    for _ in range(20):
        check(loaded.space.to_config(loaded.space.sample_params(rng)))


def test_each_spec_shows_its_feature() -> None:
    assert spec("hyperband").early_terminate.type == "hyperband"
    assert spec("digits").early_terminate.type == "hyperband"
    assert spec("asha").early_terminate.type == "asha"
    assert len(spec("multi_objective").objectives) == 2
    assert any(len(p.path) > 1 for p in spec("nested").parameters)
    assert spec("conditional").space.is_conditional
    assert [w.kind for w in spec("warm_start").sweeper.warm_start] == ["export"]
    assert spec("fractional_gpus").sweeper.resources.gpus == 0.5
    program = spec("program")
    assert program.command is not None and "${args}" in program.command
    assert {t.type for t in spec("trackers").sweeper.trackers} == {"jsonl", "mlflow", "tensorboard"}
    custom = spec("custom_optuna")
    assert custom.method == "custom" and custom.scheduler is not None and custom.defines_space_by_run
    assert custom.sweeper.max_concurrent == 4
    # The quickstart needs nothing beyond the core package and scikit-learn.
    assert spec("quickstart").sweeper.trainer == "trainers.boosting:train"
    assert spec("quickstart").sweeper.resources.gpus == 0
