"""An ordinary W&B training script, run by sweeper through a spec's ``program:`` and ``command:``.

Nothing sweeper-specific: sweeper passes the parameters on the command line (``${args}``) and in the
param file ``wandb.init()`` reads (``WANDB_SWEEP_PARAM_PATH``), exactly as the W&B agent does, and what
the script logs with ``wandb.log()`` reaches the sweep (the objective, hyperband's decisions) through
the hook sweeper puts on the program's ``PYTHONPATH``; no W&B account is needed. Run it by hand as
usual::

    python trainers/wandb_script.py --lr 0.3 --epochs 20

It fits a logistic regression by mini-batch gradient descent on generated data (numpy only).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import wandb


def make_data(seed: int, n: int = 2000, features: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A linearly separable-ish binary problem: labels from a random hyperplane plus label noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    w = rng.normal(size=features)
    y = (x @ w + rng.normal(scale=2.0, size=n) > 0).astype(float)
    return x, y


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--l2", type=float, default=0.0)
    parser.add_argument("--data_seed", type=int, default=0)
    args = parser.parse_args()

    os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine unless you ask
    run = wandb.init(project="sweeper-examples", config=vars(args))
    config = wandb.config

    x, y = make_data(config.data_seed)
    split = int(0.75 * len(x))
    x_train, y_train, x_val, y_val = x[:split], y[:split], x[split:], y[split:]
    rng = np.random.default_rng(config.data_seed + 1)
    w = np.zeros(x.shape[1])

    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(split)
        for start in range(0, split, config.batch_size):
            batch = order[start : start + config.batch_size]
            p = 1 / (1 + np.exp(-x_train[batch] @ w))
            grad = x_train[batch].T @ (p - y_train[batch]) / len(batch) + config.l2 * w
            w -= config.lr * grad

        p_val = 1 / (1 + np.exp(-x_val @ w))
        metrics = {
            "train_loss": log_loss(1 / (1 + np.exp(-x_train @ w)), y_train),
            "val_loss": log_loss(p_val, y_val),
            "val_accuracy": float(np.mean((p_val > 0.5) == y_val)),
        }
        wandb.log({**metrics, "epoch": epoch})

    run.finish()


if __name__ == "__main__":
    main()
