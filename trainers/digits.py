"""A PyTorch MLP on scikit-learn's bundled handwritten digits: per-epoch metrics, checkpoints, resume.

Runs on the GPU when the trial was given one (``torch.cuda.is_available()`` inside the Ray task: Ray
sets ``CUDA_VISIBLE_DEVICES``) and on the CPU otherwise; a trial takes a few seconds on a laptop CPU.
Needs PyTorch and scikit-learn (``pip install -e '.[examples,torch]'``), imported only when a trial
runs, so this module imports anywhere.

Config (every key optional; unknown keys are an error, to catch typos in a spec)::

    epochs: 10
    batch_size: 64
    lr: 0.001
    weight_decay: 0.0
    optimizer: adam          # or sgd (momentum 0.9)
    hidden: 64               # units per hidden layer
    layers: 1                # hidden layers
    dropout: 0.0
    seed: 0

Logs at ``step`` = epoch (1-based): ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``.
After each epoch it saves ``digits.pt`` in ``trial.checkpoint_dir``; a retried trial finds it there,
replays the finished epochs' metrics and resumes after the last one instead of starting over.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from sweeper import Trial

DEFAULTS: dict[str, Any] = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "optimizer": "adam",
    "hidden": 64,
    "layers": 1,
    "dropout": 0.0,
    "seed": 0,
}
OPTIMIZERS = ("adam", "sgd")
CHECKPOINT = "digits.pt"
# The train/validation split is the same for every trial, so their scores compare.
SPLIT_SEED = 0


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in, checked.

    Raises:
        ValueError: on an unknown key or an out-of-range value, naming it.

    Example:
        >>> settings({"lr": 0.01})["optimizer"]
        'adam'
    """
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ValueError(
            f"digits config: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(DEFAULTS)}"
        )
    cfg = {**DEFAULTS, **config}
    if cfg["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"digits config: optimizer must be one of {OPTIMIZERS}, got {cfg['optimizer']!r}")
    for key in ("epochs", "batch_size", "hidden", "layers"):
        if int(cfg[key]) < 1:
            raise ValueError(f"digits config: {key} must be >= 1, got {cfg[key]!r}")
    if not 0 <= float(cfg["dropout"]) < 1:
        raise ValueError(f"digits config: dropout must be in [0, 1), got {cfg['dropout']!r}")
    if float(cfg["lr"]) <= 0:
        raise ValueError(f"digits config: lr must be > 0, got {cfg['lr']!r}")
    return cfg


def train(config: Mapping[str, Any], trial: Trial) -> None:
    """Train for ``epochs`` epochs, resuming from ``trial.checkpoint_dir`` if it holds a checkpoint."""
    try:
        import torch
        from torch import nn
    except ImportError as exc:
        raise ImportError("trainers.digits needs PyTorch: pip install -e '.[torch]'") from exc
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError("trainers.digits needs scikit-learn: pip install -e '.[examples]'") from exc

    cfg = settings(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(int(cfg["seed"]))

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x / 16.0, y, test_size=0.25, stratify=y, random_state=SPLIT_SEED
    )
    train_x = torch.tensor(x_train, dtype=torch.float32, device=device)
    train_y = torch.tensor(y_train, dtype=torch.long, device=device)
    val_x = torch.tensor(x_val, dtype=torch.float32, device=device)
    val_y = torch.tensor(y_val, dtype=torch.long, device=device)

    model = _mlp(in_features=x.shape[1], cfg=cfg).to(device)
    optimizer: torch.optim.Optimizer
    if cfg["optimizer"] == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg["lr"], momentum=0.9, weight_decay=cfg["weight_decay"]
        )
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator(device="cpu").manual_seed(int(cfg["seed"]))

    checkpoint = Path(trial.checkpoint_dir) / CHECKPOINT
    history: list[dict[str, float]] = []
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        # Dropout draws from torch's global generators: restore them too, so a resumed run matches.
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"])
        history = list(state["history"])
        # A retry is a new run: replay the finished epochs so its curve (and the pruner's view) is whole.
        for epoch, metrics in enumerate(history, start=1):
            trial.log(metrics, step=epoch)

    batch_size = int(cfg["batch_size"])
    for epoch in range(len(history) + 1, int(cfg["epochs"]) + 1):
        model.train()
        order = torch.randperm(len(train_x), generator=generator).to(device)
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss_fn(model(train_x[batch]), train_y[batch]).backward()
            optimizer.step()

        train_loss, train_accuracy = _evaluate(model, loss_fn, train_x, train_y)
        val_loss, val_accuracy = _evaluate(model, loss_fn, val_x, val_y)
        metrics = {
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
        }
        history.append(metrics)
        # Save before logging: if the pruner stops us now, a later retry still resumes past this epoch.
        _save(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generator": generator.get_state(),
                "rng": torch.get_rng_state(),
                **({"cuda_rng": torch.cuda.get_rng_state()} if device.type == "cuda" else {}),
                "history": history,
            },
        )
        # Raises sweeper.TrialPruned when the pruner stops this trial: let it propagate.
        trial.log(metrics, step=epoch)


def _mlp(in_features: int, cfg: Mapping[str, Any]) -> torch.nn.Module:
    from torch import nn

    layers: list[Any] = []
    width = in_features
    for _ in range(int(cfg["layers"])):
        layers += [nn.Linear(width, int(cfg["hidden"])), nn.ReLU(), nn.Dropout(float(cfg["dropout"]))]
        width = int(cfg["hidden"])
    layers.append(nn.Linear(width, 10))
    return nn.Sequential(*layers)


def _evaluate(model: torch.nn.Module, loss_fn: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    import torch

    model.eval()
    with torch.no_grad():
        logits = model(x)
        loss = float(loss_fn(logits, y))
        accuracy = float((logits.argmax(dim=1) == y).float().mean())
    return loss, accuracy


def _save(path: Path, state: Mapping[str, Any]) -> None:
    import torch

    # Write then rename, so a trial killed mid-save never leaves a torn checkpoint behind.
    tmp = path.with_name(path.name + ".tmp")
    torch.save(dict(state), tmp)
    os.replace(tmp, path)
