"""W&B's 2026 `scheduler:` block and `method: custom`: W&B's validation rules, and ours on top.

W&B's rules are those of its `sweeps` source (`config/cfg.py`, `config/schema.json`,
`tests/test_config.py`, version of August 2026); each case below names the W&B test it mirrors.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sweeper import SpecError, load_spec
from sweeper.cli import main
from sweeper.spec.model import Scheduler

OPTUNA = {"engine": "optuna", "source": "scheduler.py", "optimizer": "build_study", "search_space": "space"}
CUSTOM: dict[str, Any] = {"method": "custom", "metric": {"name": "loss"}, "scheduler": OPTUNA}
WANDB: dict[str, Any] = {
    "method": "bayes",
    "metric": {"name": "loss"},
    "scheduler": {"engine": "wandb"},
    "parameters": {"v1": {"values": [1, 2, 3]}},
}


def changed(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def test_custom_with_an_optuna_scheduler_needs_no_parameters() -> None:
    # W&B: test_parameters_not_required_when_scheduler_defines_search_space
    spec = load_spec(CUSTOM)
    assert spec.method == "custom"
    assert spec.scheduler == Scheduler("optuna", "scheduler.py", "build_study", "space")
    assert spec.defines_space_by_run and spec.parameters == () and spec.space.names == ()
    assert spec.ignored_keys == ()


def test_optuna_without_search_space_searches_the_parameters() -> None:
    spec = load_spec(
        changed(
            CUSTOM,
            scheduler={"engine": "optuna", "source": "s.py", "optimizer": "build_study"},
            parameters={"x": {"min": 0.0, "max": 1.0}},
        )
    )
    assert not spec.defines_space_by_run and spec.space.names == ("x",)
    # W&B: test_scheduler_only_engine_required (an engine alone is a whole block).
    alone = load_spec(changed(CUSTOM, scheduler={"engine": "optuna"}, parameters={"x": {"values": [1, 2]}}))
    assert alone.scheduler == Scheduler("optuna")


@pytest.mark.parametrize("method", ["grid", "random", "bayes"])
def test_engine_wandb_runs_the_usual_methods(method: str) -> None:
    # W&B: test_scheduler_wandb_engine_valid, test_scheduler_only_engine_required
    spec = load_spec(changed(WANDB, method=method))
    assert spec.method == method and spec.scheduler == Scheduler("wandb")
    assert spec.space.names == ("v1",) and spec.ignored_keys == ()


def test_multi_objective_custom_sweep() -> None:
    # W&B: test_metrics_multi_objective_with_custom_method
    spec = load_spec(
        changed(CUSTOM, metric=None, metrics=[{"name": "loss"}, {"name": "accuracy", "goal": "maximize"}])
    )
    assert [m.goal for m in spec.objectives] == ["minimize", "maximize"]


def test_the_launch_scheduler_block_is_still_ignored() -> None:
    # W&B Launch's `scheduler: {job, num_workers}` runs on W&B's servers; it has no engine.
    spec = load_spec(
        {
            "method": "random",
            "parameters": {"x": {"min": 0, "max": 3}},
            "scheduler": {"job": "wandb/sweep-jobs/job-optuna-sweep-scheduler:latest", "num_workers": 2},
        }
    )
    assert spec.scheduler is None and spec.ignored_keys == ("scheduler",)


RULES = [
    # (W&B test or "ours", the spec, where and what the error says)
    (
        "test_scheduler_missing_required_field",
        changed(CUSTOM, scheduler={k: v for k, v in OPTUNA.items() if k != "engine"}),
        r"scheduler\.engine: is required: one of optuna, ax, wandb",
    ),
    (
        "test_scheduler_invalid_engine_rejected",
        changed(CUSTOM, scheduler={**OPTUNA, "engine": "not-a-real-engine"}),
        r"scheduler\.engine: must be one of optuna, ax, wandb, got 'not-a-real-engine'",
    ),
    (
        "test_scheduler_unavailable_engine_raises (ax)",
        changed(CUSTOM, scheduler={**OPTUNA, "engine": "ax"}),
        r"scheduler\.engine: ax is not supported by sweeper: use engine: optuna with method: custom",
    ),
    (
        "ours: the optuna engine runs method custom",
        changed(CUSTOM, method="bayes"),
        r"method: must be custom with scheduler\.engine: optuna \(W&B's rule\), got bayes",
    ),
    (
        "test_scheduler_engine_wandb_requires_method",
        changed(WANDB, method="custom"),
        r"method: must be grid, random, bayes with scheduler\.engine: wandb \(W&B's rule\), got custom",
    ),
    (
        "test_scheduler_and_early_terminate_mutually_exclusive",
        changed(WANDB, early_terminate={"type": "hyperband", "min_iter": 3}),
        r"early_terminate: cannot be combined with scheduler \(W&B's rule\)",
    ),
    (
        "test_scheduler_and_early_terminate_mutually_exclusive (optuna)",
        changed(CUSTOM, early_terminate={"type": "hyperband", "min_iter": 3}),
        r"early_terminate: cannot be combined with scheduler .*its study's pruner",
    ),
    (
        "test_scheduler_and_controller_mutually_exclusive",
        changed(WANDB, controller={"type": "local"}),
        r"controller\.type: cannot be local with a scheduler \(W&B's rule\)",
    ),
    (
        "test_scheduler_optimizer_or_search_space_requires_source (optimizer)",
        changed(
            CUSTOM,
            scheduler={"engine": "optuna", "optimizer": "build_study"},
            parameters={"x": {"values": [1]}},
        ),
        r"scheduler\.source: is required with scheduler\.optimizer \(W&B's rule\)",
    ),
    (
        "test_scheduler_optimizer_or_search_space_requires_source (search_space)",
        changed(CUSTOM, scheduler={"engine": "optuna", "search_space": "space"}),
        r"scheduler\.source: is required with scheduler\.search_space \(W&B's rule\)",
    ),
    (
        "test_parameters_still_required_when_scheduler_has_no_search_space",
        changed(CUSTOM, scheduler={"engine": "optuna", "source": "s.py", "optimizer": "build_study"}),
        r"parameters: is required unless scheduler\.search_space is set",
    ),
    (
        "test_parameters_still_required_without_scheduler",
        {"method": "bayes", "metric": {"name": "loss"}},
        r"parameters: is required unless scheduler\.search_space is set",
    ),
    (
        "test_metric_and_metrics_mutually_exclusive",
        changed(CUSTOM, metrics=[{"name": "loss"}, {"name": "accuracy"}]),
        r"metrics: cannot be combined with metric",
    ),
    (
        "test_metrics_requires_at_least_two",
        changed(CUSTOM, metric=None, metrics=[{"name": "loss"}]),
        r"metrics: must be a list of at least 2 metric mappings",
    ),
    (
        "ours: custom without a scheduler is not silent random search",
        {"method": "custom", "metric": {"name": "loss"}, "parameters": {"x": {"min": 0.0, "max": 1.0}}},
        r"method: custom needs a `scheduler: \{engine: optuna, .*write method: random",
    ),
    (
        "ours: custom with W&B Launch's scheduler block",
        changed(CUSTOM, scheduler={"job": "e/p/job:latest"}, parameters={"x": {"values": [1]}}),
        r"scheduler\.engine: is required with method: custom: optuna",
    ),
    (
        "ours: custom optimizes a metric",
        changed(CUSTOM, metric=None),
        r"metric: is required when method is custom",
    ),
    (
        "ours: parameters and a search space are one space too many",
        changed(CUSTOM, parameters={"x": {"min": 0.0, "max": 1.0}}),
        r"parameters: cannot be combined with scheduler\.search_space",
    ),
    (
        "ours: engine wandb runs no user code",
        changed(WANDB, scheduler={"engine": "wandb", "source": "s.py", "optimizer": "build_study"}),
        r"scheduler\.optimizer: is not used by engine: wandb",
    ),
    (
        "ours: the study picks the sampler",
        changed(CUSTOM, sweeper={"sampler": "gp"}),
        r"sweeper\.sampler: cannot be set with scheduler\.engine: optuna, got 'gp'",
    ),
    (
        "ours: the study's sampler carries the seed",
        changed(CUSTOM, sweeper={"seed": 3}),
        r"sweeper\.seed: cannot be set with scheduler\.optimizer, got 3",
    ),
    (
        "ours: source is a Python file",
        changed(CUSTOM, scheduler={**OPTUNA, "source": "scheduler.ipynb"}),
        r"scheduler\.source: must be a Python file \(\.py\), got 'scheduler\.ipynb'",
    ),
    (
        "ours: a function name",
        changed(CUSTOM, scheduler={**OPTUNA, "search_space": "my-space"}),
        r"scheduler\.search_space: must name a function in the source file, got 'my-space'",
    ),
    (
        "additionalProperties: false",
        changed(CUSTOM, scheduler={**OPTUNA, "num_workers": 2}),
        r"scheduler\.num_workers: unknown key",
    ),
]


@pytest.mark.parametrize(("rule", "data", "message"), RULES, ids=[r[0] for r in RULES])
def test_each_rule_is_a_located_error(rule: str, data: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=f"<mapping>: {message}"):
        load_spec(data)


def test_sweeper_seed_is_allowed_when_optuna_builds_the_default_study() -> None:
    spec = load_spec(
        changed(CUSTOM, scheduler={k: v for k, v in OPTUNA.items() if k != "optimizer"}, sweeper={"seed": 3})
    )
    assert spec.sweeper.seed == 3 and spec.scheduler is not None and spec.scheduler.optimizer is None


def test_validate_exits_2_with_every_located_scheduler_error(tmp_path: Path) -> None:
    path = tmp_path / "ax.yaml"
    path.write_text(
        "method: bayes\nmetric: {name: loss}\n"
        "scheduler: {engine: ax, source: ax_setup.py, optimizer: make_client}\n"
        "early_terminate: {type: hyperband, min_iter: 3}\n"
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert f"error: {path}: scheduler.engine: ax is not supported by sweeper" in result.stderr
    assert f"error: {path}: early_terminate: cannot be combined with scheduler" in result.stderr
    assert f"error: {path}: parameters: is required unless scheduler.search_space is set" in result.stderr
    assert "Traceback" not in result.output
