"""The bundled datasets the example trainers share: one loader, one seeded, stratified split."""

from __future__ import annotations

from typing import Any

DATASETS = ("breast_cancer", "wine")
SPLIT_SEED = 0  # the same split for every trial, so configs are compared on the same data


def load_split(dataset: str, val_fraction: float, trainer: str) -> tuple[Any, Any, Any, Any]:
    """``x_train, x_val, y_train, y_val`` of a dataset bundled with scikit-learn (no download).

    Raises:
        ImportError: scikit-learn is missing; the message names the extra (``trainer`` says who needs it).
    """
    try:
        from sklearn import datasets
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise ImportError(f"trainers.{trainer} needs scikit-learn: pip install -e '.[examples]'") from exc
    x, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    split: tuple[Any, Any, Any, Any] = train_test_split(
        x, y, test_size=val_fraction, stratify=y, random_state=SPLIT_SEED
    )
    return split
