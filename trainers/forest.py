"""A random forest on a dataset bundled with scikit-learn, grown a few trees at a time: CPU-only, prunable.

The trainer of ``sweeps/custom_optuna.yaml``, whose search space (W&B's own example of a
define-by-run space) picks a ``complexity`` first and the rest depending on it. Trees are added in
chunks (``warm_start``) with validation metrics logged after each chunk, so a pruner can stop a poor
forest early. Needs scikit-learn (``pip install 'sweeper[examples]'``).

Config (every key optional; unknown keys are an error, to catch typos in a search space)::

    dataset: breast_cancer       # or wine
    complexity: shallow          # shallow: trees of depth <= 3; deep: unbounded depth
    n_estimators: 20             # trees in all: the fidelity
    report_every: 10             # trees between two reports
    max_features: 0.7            # fraction of the features each split looks at
    tree:
      min_samples_leaf: 1
    val_fraction: 0.25
    seed: 0

Logs at ``step`` = trees grown so far: ``val_loss`` (log loss) and ``val_accuracy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trainers.data import DATASETS, load_split

if TYPE_CHECKING:
    from sweeper import Trial

COMPLEXITY_DEPTH: dict[str, int | None] = {"shallow": 3, "deep": None}
TREE_DEFAULTS: dict[str, Any] = {"min_samples_leaf": 1}
DEFAULTS: dict[str, Any] = {
    "dataset": "breast_cancer",
    "complexity": "shallow",
    "n_estimators": 20,
    "report_every": 10,
    "max_features": 0.7,
    "tree": TREE_DEFAULTS,
    "val_fraction": 0.25,
    "seed": 0,
}


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in, checked.

    Raises:
        ValueError: on an unknown key or an out-of-range value, naming it.

    Example:
        >>> settings({"complexity": "deep", "tree": {"min_samples_leaf": 4}})["tree"]
        {'min_samples_leaf': 4}
    """
    unknown = sorted(set(config) - set(DEFAULTS))
    tree = config.get("tree", {})
    if not isinstance(tree, Mapping):
        raise ValueError(f"forest config: tree must be a mapping, got {tree!r}")
    unknown += sorted(f"tree.{key}" for key in set(tree) - set(TREE_DEFAULTS))
    if unknown:
        raise ValueError(
            f"forest config: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(DEFAULTS)}"
        )
    merged = {**DEFAULTS, **config, "tree": {**TREE_DEFAULTS, **tree}}
    if merged["dataset"] not in DATASETS:
        raise ValueError(f"forest config: dataset must be one of {DATASETS}, got {merged['dataset']!r}")
    if merged["complexity"] not in COMPLEXITY_DEPTH:
        choices = tuple(COMPLEXITY_DEPTH)
        raise ValueError(f"forest config: complexity must be one of {choices}, got {merged['complexity']!r}")
    for key in ("n_estimators", "report_every"):
        if int(merged[key]) < 1:
            raise ValueError(f"forest config: {key} must be >= 1, got {merged[key]!r}")
    if int(merged["tree"]["min_samples_leaf"]) < 1:
        raise ValueError(
            f"forest config: tree.min_samples_leaf must be >= 1, got {merged['tree']['min_samples_leaf']!r}"
        )
    if not 0 < float(merged["max_features"]) <= 1:
        raise ValueError(f"forest config: max_features must be in (0, 1], got {merged['max_features']!r}")
    if not 0 < float(merged["val_fraction"]) < 1:
        raise ValueError(f"forest config: val_fraction must be in (0, 1), got {merged['val_fraction']!r}")
    return merged


def train(config: Mapping[str, Any], trial: Trial) -> None:
    """Grow the forest chunk by chunk, logging validation metrics after each chunk."""
    cfg = settings(config)
    x_train, x_val, y_train, y_val = load_split(cfg["dataset"], float(cfg["val_fraction"]), "forest")
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import accuracy_score, log_loss

    model = RandomForestClassifier(
        max_depth=COMPLEXITY_DEPTH[cfg["complexity"]],
        max_features=float(cfg["max_features"]),
        min_samples_leaf=int(cfg["tree"]["min_samples_leaf"]),
        warm_start=True,  # each fit() adds trees to the ones already grown
        random_state=int(cfg["seed"]),
        n_jobs=1,
    )
    total, chunk = int(cfg["n_estimators"]), int(cfg["report_every"])
    grown = 0
    while grown < total:
        grown = min(grown + chunk, total)
        model.set_params(n_estimators=grown)
        model.fit(x_train, y_train)
        probabilities = model.predict_proba(x_val)
        metrics = {
            "val_loss": float(log_loss(y_val, probabilities, labels=model.classes_)),
            "val_accuracy": float(accuracy_score(y_val, model.classes_[probabilities.argmax(axis=1)])),
        }
        # Raises sweeper.TrialPruned when the pruner stops this trial: let it propagate.
        trial.log(metrics, step=grown)
