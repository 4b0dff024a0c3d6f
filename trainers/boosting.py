"""Gradient boosting on a dataset bundled with scikit-learn: a CPU-only trainer that can be pruned.

Grows a :class:`~sklearn.ensemble.HistGradientBoostingClassifier` a few stages at a time (``warm_start``)
and logs validation metrics after each chunk, so hyperband/ASHA can stop a bad config before it has
spent its whole budget. Needs scikit-learn (``pip install -e '.[examples]'``).

Config (every key optional; unknown keys are an error, to catch typos in a spec)::

    dataset: breast_cancer       # or wine
    learning_rate: 0.1
    max_iter: 100                # boosting stages in all: the fidelity
    report_every: 10             # stages between two reports (one hyperband iteration)
    l2_regularization: 0.0
    tree:                        # nested parameters, as in sweeps/nested.yaml
      max_leaf_nodes: 31
      max_depth: null
      min_samples_leaf: 20
    val_fraction: 0.25
    seed: 0

Logs at ``step`` = stages grown so far: ``train_loss``, ``val_loss`` (log loss) and ``val_accuracy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from trainers.data import DATASETS, load_split

if TYPE_CHECKING:
    from sweeper import Trial

TREE_DEFAULTS: dict[str, Any] = {"max_leaf_nodes": 31, "max_depth": None, "min_samples_leaf": 20}
DEFAULTS: dict[str, Any] = {
    "dataset": "breast_cancer",
    "learning_rate": 0.1,
    "max_iter": 100,
    "report_every": 10,
    "l2_regularization": 0.0,
    "tree": TREE_DEFAULTS,
    "val_fraction": 0.25,
    "seed": 0,
}


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in, checked.

    Raises:
        ValueError: on an unknown key or an out-of-range value, naming it.

    Example:
        >>> settings({"tree": {"max_depth": 3}})["tree"]
        {'max_leaf_nodes': 31, 'max_depth': 3, 'min_samples_leaf': 20}
    """
    _reject_unknown(config, DEFAULTS, "")
    tree = config.get("tree", {})
    if not isinstance(tree, Mapping):
        raise ValueError(f"boosting config: tree must be a mapping, got {tree!r}")
    _reject_unknown(tree, TREE_DEFAULTS, "tree.")
    merged = {**DEFAULTS, **config, "tree": {**TREE_DEFAULTS, **tree}}
    if merged["dataset"] not in DATASETS:
        raise ValueError(f"boosting config: dataset must be one of {DATASETS}, got {merged['dataset']!r}")
    for key in ("max_iter", "report_every"):
        if int(merged[key]) < 1:
            raise ValueError(f"boosting config: {key} must be >= 1, got {merged[key]!r}")
    if not 0 < float(merged["val_fraction"]) < 1:
        raise ValueError(f"boosting config: val_fraction must be in (0, 1), got {merged['val_fraction']!r}")
    return merged


def train(config: Mapping[str, Any], trial: Trial) -> None:
    """Fit gradient boosting chunk by chunk, logging validation metrics after each chunk."""
    cfg = settings(config)
    x_train, x_val, y_train, y_val = load_split(cfg["dataset"], float(cfg["val_fraction"]), "boosting")
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import accuracy_score, log_loss

    model = HistGradientBoostingClassifier(
        learning_rate=float(cfg["learning_rate"]),
        l2_regularization=float(cfg["l2_regularization"]),
        early_stopping=False,  # the sweep's pruner decides when to stop
        warm_start=True,  # each fit() adds stages to the trees already grown
        random_state=int(cfg["seed"]),
        **cfg["tree"],
    )
    total, chunk = int(cfg["max_iter"]), int(cfg["report_every"])
    stages = 0
    while stages < total:
        stages = min(stages + chunk, total)
        model.set_params(max_iter=stages)
        model.fit(x_train, y_train)
        metrics = {
            "train_loss": float(log_loss(y_train, model.predict_proba(x_train), labels=model.classes_)),
            "val_loss": float(log_loss(y_val, model.predict_proba(x_val), labels=model.classes_)),
            "val_accuracy": float(accuracy_score(y_val, model.predict(x_val))),
        }
        # Raises sweeper.TrialPruned when the pruner stops this trial: let it propagate.
        trial.log(metrics, step=stages)


def _reject_unknown(config: Mapping[str, Any], known: Mapping[str, Any], prefix: str) -> None:
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(
            f"boosting config: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"expected some of {', '.join(prefix + k for k in known)}"
        )
