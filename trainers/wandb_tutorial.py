"""W&B's sweep tutorial trainer, unchanged in shape: ``wandb.init()``, ``wandb.config``, ``wandb.log()``.

The function W&B's tutorial hands to ``wandb.agent(sweep_id, function=train_sweep, count=50)``; with
sweeper it is ``sweeper.agent(sweep_id, function=train_sweep, count=50)`` or, in a spec,
``sweeper.trainer: trainers.wandb_tutorial:train_sweep`` (see ``sweeps/wandb_tutorial.yaml``). It
trains a small PyTorch MLP on scikit-learn's bundled handwritten digits and logs ``train_loss``,
``val_loss``, ``val_accuracy`` and ``epoch`` each epoch. Training is seeded (``seed``, default 0),
so a config always gives the same curve.

Needs W&B, PyTorch and scikit-learn (``pip install 'sweeper[wandb,torch,examples]'``), imported
only when a trial runs, so this module imports anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The train/validation split is the same for every trial, so their scores compare.
SPLIT_SEED = 0
# What wandb.init(config=...) gets; the sweep's values override them, as under W&B's agent.
DEFAULTS = {"epochs": 10, "batch_size": 64, "dropout": 0.0, "seed": 0}
# What the sweep must give.
REQUIRED = ("optimizer", "hidden", "learning_rate")


def check_config(config: dict[str, Any]) -> None:
    """Raise ValueError on a config train_sweep() cannot use (for checking a spec up front).

    Example:
        >>> check_config({"optimizer": "adam", "hidden": 32, "learning_rate": 0.01, "epochs": 3})
        >>> check_config({"optimizer": "adam", "hiden": 32, "learning_rate": 0.01})
        Traceback (most recent call last):
        ...
        ValueError: wandb_tutorial config: unknown key(s) hiden; missing hidden
    """
    unknown = sorted(set(config) - set(DEFAULTS) - set(REQUIRED))
    missing = [key for key in REQUIRED if key not in config]
    if unknown or missing:
        unknown_keys, missing_keys = ", ".join(unknown) or "-", ", ".join(missing) or "-"
        raise ValueError(f"wandb_tutorial config: unknown key(s) {unknown_keys}; missing {missing_keys}")
    if config["optimizer"] not in ("adam", "sgd"):
        raise ValueError(f"wandb_tutorial config: optimizer must be adam or sgd, got {config['optimizer']!r}")


def build_dataset(batch_size: int) -> tuple[Any, Any]:
    """Train batches (a DataLoader) and the validation set (a tensor pair)."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from torch.utils.data import DataLoader, TensorDataset

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x / 16.0, y, test_size=0.25, stratify=y, random_state=SPLIT_SEED
    )
    train = TensorDataset(torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train))
    loader = DataLoader(train, batch_size=batch_size, shuffle=True)
    return loader, (torch.tensor(x_val, dtype=torch.float32), torch.tensor(y_val))


def build_network(hidden: int, dropout: float) -> torch.nn.Module:
    from torch import nn

    return nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 10))


def build_optimizer(network: torch.nn.Module, optimizer: str, learning_rate: float) -> torch.optim.Optimizer:
    import torch

    if optimizer == "sgd":
        return torch.optim.SGD(network.parameters(), lr=learning_rate, momentum=0.9)
    return torch.optim.Adam(network.parameters(), lr=learning_rate)


def train_epoch(network: torch.nn.Module, loader: Any, optimizer: torch.optim.Optimizer) -> float:
    """One pass over the training batches; the mean training loss."""
    from torch import nn

    network.train()
    total, count = 0.0, 0
    for data, target in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(network(data), target)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(target)
        count += len(target)
    return total / count


def evaluate(network: torch.nn.Module, validation: tuple[Any, Any]) -> tuple[float, float]:
    """Validation loss and accuracy."""
    import torch
    from torch import nn

    network.eval()
    data, target = validation
    with torch.no_grad():
        logits = network(data)
        loss = float(nn.functional.cross_entropy(logits, target))
        accuracy = float((logits.argmax(1) == target).float().mean())
    return loss, accuracy


def train_sweep() -> None:
    import torch
    import wandb

    run = wandb.init(config=DEFAULTS)
    config = wandb.config
    torch.manual_seed(config.seed)

    loader, validation = build_dataset(config.batch_size)
    network = build_network(config.hidden, config.dropout)
    optimizer = build_optimizer(network, config.optimizer, config.learning_rate)

    for epoch in range(config.epochs):
        train_loss = train_epoch(network, loader, optimizer)
        val_loss, val_acc = evaluate(network, validation)
        wandb.log({"train_loss": train_loss, "val_loss": val_loss, "val_accuracy": val_acc, "epoch": epoch})
    run.finish()
