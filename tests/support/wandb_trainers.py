"""Trainers for the W&B bridge tests: W&B's form (``def f():`` + wandb.init/log) and ours, side by side."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainers import wandb_tutorial


def tutorial_with_trial(config: Mapping[str, Any], trial: Any) -> None:
    """trainers.wandb_tutorial.train_sweep written with sweeper's trial.log instead of W&B."""
    import torch

    cfg = {**wandb_tutorial.DEFAULTS, **config}
    torch.manual_seed(cfg["seed"])
    loader, validation = wandb_tutorial.build_dataset(cfg["batch_size"])
    network = wandb_tutorial.build_network(cfg["hidden"], cfg["dropout"])
    optimizer = wandb_tutorial.build_optimizer(network, cfg["optimizer"], cfg["learning_rate"])
    for epoch in range(cfg["epochs"]):
        train_loss = wandb_tutorial.train_epoch(network, loader, optimizer)
        val_loss, val_acc = wandb_tutorial.evaluate(network, validation)
        metrics = {"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc, "epoch": epoch}
        trial.log(metrics, step=epoch)  # W&B's step of the row: 0, 1, ...


# Every combination of step= and commit= W&B's Run.log takes, in one run.
LOG_CALLS: list[tuple[dict[str, Any], int | None, bool | None]] = [
    ({"loss": 0.9, "a": 1}, None, None),  # row at step 0, committed
    ({"loss": 0.8}, None, False),  # accumulates into step 1 ...
    ({"b": 2}, None, None),  # ... committed with this
    ({"loss": 0.7}, 5, None),  # step 5: pending (commit defaults to False with step=)
    ({"c": 3}, 5, None),  # same row
    ({"loss": 0.6}, 7, None),  # step 7 commits the step-5 row, pends its own
    ({"loss": 0.1}, 6, None),  # below the current step: W&B drops it
    ({"loss": 0.5}, 7, True),  # commits step 7
    ({"loss": 0.4, "d": 4}, None, None),  # step 8, committed
    ({"loss": 0.3}, 9, None),  # pending at the run's end: finish() commits it
]


def logs_every_way() -> None:
    """W&B's form: log through every step/commit combination, set a summary value, record the config."""
    import wandb

    run = wandb.init(config={"lr": 1.0, "extra": "kept", "opt": {"name": "sgd", "momentum": 0.9}})
    config = wandb.config
    seen = {
        "config": dict(config.items()),
        "attribute_lr": config.lr,
        "item_opt": dict(config["opt"]),
        "global_run_is_run": wandb.run is run,
        "pid": os.getpid(),
    }
    config.update({"lr": 123.0}, allow_val_change=True)  # a sweep value is locked: W&B ignores this
    seen["lr_after_update"] = wandb.config.lr
    Path(f"seen-{run.name}.json").write_text(json.dumps(seen))
    for data, step, commit in LOG_CALLS:
        if step is None and commit is None:
            wandb.log(data)  # the module-level function and the run's method both go through
        else:
            run.log(data, step=step, commit=commit)
    # W&B's own media stay in the W&B run; the trial takes the numbers logged alongside.
    table = wandb.Table(columns=["epoch", "loss"], data=[[0, 0.9], [1, 0.8]])
    run.log({"curve": table, "weights": wandb.Histogram([0.1, 0.2, 0.2, 0.5]), "media_step": 1}, step=10)
    run.summary["best_loss"] = 0.01
    wandb.summary.update({"loss": 0.05})
    run.finish()


def curve() -> None:
    """W&B's form, fast: loss = x / (step + 1), ``steps`` steps of ``pause`` s (default 0.01); a
    ``with`` block, no finish()."""
    import wandb

    with wandb.init() as run:
        for step in range(run.config.steps):
            wandb.log({"loss": run.config.x / (step + 1), "pid": os.getpid()})
            time.sleep(run.config.get("pause", 0.01))


def uses_wandb_without_init() -> float:
    """W&B's form that logs nothing: its return value is the objective."""
    return 0.25
