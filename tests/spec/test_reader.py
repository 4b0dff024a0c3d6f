"""load_spec: W&B's top-level keys and inference rules, our `sweeper:` block, located errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from sweeper import SpecError, load_spec
from sweeper.spec.model import EarlyTerminate, Metric, Resources, TrackerSpec

BASE: dict[str, Any] = {"method": "random", "parameters": {"x": {"min": 0.0, "max": 1.0}}}


def spec_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def issues_of(data: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(data)
    return [str(issue) for issue in info.value.issues]


def test_every_wandb_top_level_key_is_accepted() -> None:
    spec = load_spec(
        {
            "method": "bayes",
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
            "metric": {"name": "loss", "goal": "maximize", "target": 0.9, "impute": "best"},
            "early_terminate": {"type": "hyperband", "min_iter": 3},
            "program": "train.py",
            "command": ["${env}", "${interpreter}", "${program}", "${args}"],
            "name": "n",
            "description": "d",
            "project": "p",
            "entity": "e",
            "run_cap": 10,
            "controller": {"type": "local"},
            "job": "entity/project/job:latest",
            "image_uri": "registry/image:tag",
            "apiVersion": "v1",
            "kind": "sweep",
            "scheduler": {
                "job": "wandb/sweep-jobs/job-optuna-sweep-scheduler:latest",
                "num_workers": 2,
                "settings": {"method": "bayes"},
            },
        }
    )
    assert spec.method == "bayes"
    assert spec.metric == Metric("loss", "maximize", 0.9, "best")
    assert spec.objectives == (spec.metric,)
    assert spec.early_terminate == EarlyTerminate(type="hyperband", min_iter=3)
    assert spec.command == ("${env}", "${interpreter}", "${program}", "${args}")
    assert (spec.name, spec.description, spec.project, spec.entity, spec.run_cap) == ("n", "d", "p", "e", 10)
    assert spec.ignored_keys == ("controller", "job", "image_uri", "apiVersion", "kind", "scheduler")
    assert spec.raw["scheduler"]["num_workers"] == 2


def test_scheduler_engine_form_and_multi_objective_metrics() -> None:
    spec = load_spec(
        spec_with(
            method="bayes",
            metrics=[{"name": "acc", "goal": "maximize"}, {"name": "latency"}],
            scheduler={"engine": "wandb"},
        )
    )
    assert [m.name for m in spec.objectives] == ["acc", "latency"]
    assert [m.goal for m in spec.objectives] == ["maximize", "minimize"]
    # W&B's own engine is read, not ignored: it runs the spec's method as without a scheduler.
    assert spec.scheduler is not None and spec.scheduler.engine == "wandb"
    assert spec.ignored_keys == ()


@pytest.mark.parametrize(
    ("fragment", "distribution", "fields"),
    [
        ({"value": [1, 2]}, "constant", {"value": [1, 2]}),
        ({"values": [1, "a", None]}, "categorical", {"values": (1, "a", None), "probabilities": None}),
        (
            {"values": ["a", "b"], "probabilities": [0.25, 0.75]},
            "categorical",
            {"probabilities": (0.25, 0.75)},
        ),
        (
            {"values": [1], "distribution": "categorical_w_probabilities", "probabilities": [1]},
            "categorical",
            {},
        ),
        ({"min": 1, "max": 5}, "int_uniform", {"min": 1, "max": 5}),
        ({"min": 1, "max": 5.0}, "uniform", {"min": 1, "max": 5.0}),
        ({"min": 0.5, "max": 5}, "uniform", {}),
        ({"min": 1, "max": 5, "distribution": "uniform"}, "uniform", {"min": 1}),
        ({"distribution": "q_uniform", "min": 0, "max": 10}, "q_uniform", {"q": 1.0}),
        ({"distribution": "q_uniform", "min": 0, "max": 10, "q": 2}, "q_uniform", {"q": 2}),
        ({"distribution": "log_uniform", "min": -5, "max": 0}, "log_uniform", {"min": -5, "max": 0}),
        ({"distribution": "log_uniform_values", "min": 1e-5, "max": 1}, "log_uniform_values", {}),
        ({"distribution": "q_log_uniform", "min": 0, "max": 3}, "q_log_uniform", {"q": 1.0}),
        ({"distribution": "q_log_uniform_values", "min": 1, "max": 64, "q": 4}, "q_log_uniform_values", {}),
        ({"distribution": "inv_log_uniform", "min": 0, "max": 5}, "inv_log_uniform", {}),
        ({"distribution": "inv_log_uniform_values", "min": 0.1, "max": 1}, "inv_log_uniform_values", {}),
        ({"distribution": "normal"}, "normal", {"mu": 0.0, "sigma": 1.0}),
        ({"distribution": "q_normal", "mu": 5, "sigma": 2, "q": 0.5}, "q_normal", {"mu": 5, "q": 0.5}),
        ({"distribution": "log_normal", "mu": 1}, "log_normal", {"mu": 1, "sigma": 1.0}),
        ({"distribution": "q_log_normal"}, "q_log_normal", {"q": 1.0}),
        ({"distribution": "beta", "a": 2}, "beta", {"a": 2, "b": 1.0}),
        ({"distribution": "q_beta", "q": 0.1}, "q_beta", {"a": 1.0, "b": 1.0, "q": 0.1}),
        ({"distribution": "constant", "value": "x"}, "constant", {"value": "x"}),
        ({"distribution": "int_uniform", "min": -3, "max": 3}, "int_uniform", {}),
    ],
)
def test_parameter_forms_follow_wandb_inference(
    fragment: dict[str, Any], distribution: str, fields: dict[str, Any]
) -> None:
    (parameter,) = load_spec(spec_with(parameters={"p": fragment})).parameters
    assert parameter.distribution == distribution
    for key, value in fields.items():
        got = getattr(parameter, key)
        assert got == value and type(got) is type(value), key


def test_nested_parameters_to_any_depth_in_wandb_order() -> None:
    spec = load_spec(
        spec_with(
            parameters={
                "z": {"value": 1},
                "model": {
                    "parameters": {
                        "width": {"values": [1, 2]},
                        "deep": {"parameters": {"k": {"min": 1, "max": 3}}},
                    }
                },
                "a_b": {"values": [0]},
                "model_x": {"value": 2},
            }
        )
    )
    assert [p.path for p in spec.parameters] == [
        ("a_b",),
        ("model", "deep", "k"),
        ("model", "width"),
        ("model_x",),
        ("z",),
    ]
    assert spec.parameters[1].name == "model.deep.k"


def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "method: random\nparameters:\n  lr: {distribution: log_uniform_values, min: 1e-5, max: 1E-1}\n"
        "  wd: {values: [1e-4, 3e-4, 0]}\n  flag: {values: [on, off]}\n"
    )
    spec = load_spec(path)
    by_name = {p.name: p for p in spec.parameters}
    lr, flag, wd = by_name["lr"], by_name["flag"], by_name["wd"]
    assert (lr.min, lr.max) == (1e-5, 0.1)
    assert wd.values == (1e-4, 3e-4, 0)
    assert flag.values == (True, False)  # YAML 1.1 booleans, as W&B reads them
    assert spec.raw["parameters"]["lr"]["min"] == 1e-5
    assert spec.source == str(path)


def test_sweeper_block_settings() -> None:
    spec = load_spec(
        spec_with(
            sweeper={
                "trainer": "trainers.functions:branin",
                "resources": {"gpus": 0.5, "cpus": 2, "memory": "4GB", "custom": {"TPU": 1}},
                "max_concurrent": 3,
                "trackers": ["jsonl", {"type": "mlflow", "tracking_uri": "file:/tmp/x"}],
                "seed": 7,
                "retries": 2,
                "timeout": 30,
                "sampler": "gp",
                "storage": "sqlite:///x.db",
                "tags": ["a", "b"],
            }
        )
    )
    s = spec.sweeper
    assert s.trainer == "trainers.functions:branin"
    assert s.resources == Resources(gpus=0.5, cpus=2.0, memory=4_000_000_000, custom={"TPU": 1.0})
    assert s.trackers == (TrackerSpec("jsonl"), TrackerSpec("mlflow", {"tracking_uri": "file:/tmp/x"}))
    assert (s.max_concurrent, s.seed, s.retries, s.timeout, s.sampler) == (3, 7, 2, 30.0, "gp")
    assert (s.storage, s.tags) == ("sqlite:///x.db", ("a", "b"))


@pytest.mark.parametrize(
    ("memory", "expected"),
    [(1024, 1024), ("512MiB", 512 * 2**20), ("4GB", 4 * 10**9), ("1.5 GiB", int(1.5 * 2**30)), ("100", 100)],
)
def test_memory_sizes(memory: Any, expected: int) -> None:
    spec = load_spec(spec_with(sweeper={"resources": {"memory": memory}}))
    assert spec.sweeper.resources.memory == expected


def test_single_tracker_name_and_single_tag() -> None:
    spec = load_spec(spec_with(sweeper={"trackers": "tensorboard", "tags": "one"}))
    assert spec.sweeper.trackers == (TrackerSpec("tensorboard"),)
    assert spec.sweeper.tags == ("one",)


def test_neither_trainer_nor_program_is_valid() -> None:
    spec = load_spec(BASE)
    assert spec.sweeper.trainer is None and spec.program is None


@pytest.mark.parametrize(
    ("early", "expected"),
    [
        ({"type": "hyperband", "max_iter": 27, "s": 2}, EarlyTerminate("hyperband", max_iter=27, s=2)),
        (
            {"type": "hyperband", "min_iter": 1, "eta": 2, "strict": False},
            EarlyTerminate("hyperband", min_iter=1, eta=2.0, strict=False),
        ),
        (
            {
                "type": "asha",
                "min_resource": 2,
                "reduction_factor": 3,
                "min_early_stopping_rate": 0,
                "bootstrap_count": 1,
            },
            EarlyTerminate(
                "asha",
                options={
                    "min_resource": 2,
                    "reduction_factor": 3,
                    "min_early_stopping_rate": 0,
                    "bootstrap_count": 1,
                },
            ),
        ),
        ({"type": "asha", "min_resource": "auto"}, EarlyTerminate("asha", options={"min_resource": "auto"})),
        (
            {
                "type": "median",
                "n_startup_trials": 5,
                "n_warmup_steps": 2,
                "interval_steps": 1,
                "n_min_trials": 1,
            },
            EarlyTerminate(
                "median",
                options={"n_startup_trials": 5, "n_warmup_steps": 2, "interval_steps": 1, "n_min_trials": 1},
            ),
        ),
    ],
)
def test_early_terminate_forms(early: dict[str, Any], expected: EarlyTerminate) -> None:
    spec = load_spec(spec_with(metric={"name": "loss"}, early_terminate=early))
    assert spec.early_terminate == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"parameters": BASE["parameters"]}, "<mapping>: method: is required"),
        ({"method": "random"}, "<mapping>: parameters: is required"),
        (
            spec_with(method="gird"),
            "method: must be one of grid, random, bayes, custom, got 'gird'; did you mean 'grid'?",
        ),
        (spec_with(paramters={}), "paramters: unknown key; did you mean 'parameters'?"),
        (spec_with(parameters={}), "parameters: must hold at least one parameter"),
        (spec_with(parameters={"x": {"min": 2, "max": 1}}), "parameters.x.min: must be < max (1), got 2"),
        (
            spec_with(parameters={"x": {"min": 1.0, "max": 1.0}}),
            "parameters.x.min: must be < max (1.0), got 1.0",
        ),
        (
            spec_with(parameters={"x": {"min": 1}}),
            "parameters.x: must give value, values, min and max, distribution or parameters, "
            "got keys ['min']",
        ),
        # A misspelt key where W&B's inference looks: the key is named, with the one meant.
        (
            spec_with(parameters={"x": {"mn": 1, "max": 2}}),
            "parameters.x.mn: unknown key; did you mean 'min'?",
        ),
        (
            spec_with(parameters={"x": {"vales": [1, 2]}}),
            "parameters.x.vales: unknown key; did you mean 'values'?",
        ),
        (
            spec_with(parameters={"opt": {"parameters": {"lr": {"vaule": 0.1}}}}),
            "parameters.opt.parameters.lr.vaule: unknown key; did you mean 'value'?",
        ),
        (
            spec_with(parameters={"x": {"colour": 1}}),
            "parameters.x.colour: unknown key; expected one of: distribution, parameters, value, values",
        ),
        (
            spec_with(parameters={"x": {"values": [1], "valeu": 1}}),
            "parameters.x.valeu: unknown key; did you mean 'values'?",
        ),
        (
            spec_with(parameters={"x": {"distribution": "log_uniform_values", "min": 0, "max": 1}}),
            "parameters.x.min: must be > 0 for log_uniform_values",
        ),
        (
            spec_with(parameters={"x": {"distribution": "normall"}}),
            "parameters.x.distribution: must be one of",
        ),
        (
            spec_with(parameters={"x": {"distribution": "normal", "sigma": -1}}),
            "parameters.x.sigma: must be a number > 0, got -1",
        ),
        (
            spec_with(parameters={"x": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}}),
            "parameters.x.q: must be a number > 0",
        ),
        (
            spec_with(parameters={"x": {"distribution": "uniform", "min": "1e-5", "max": 1}}),
            "parameters.x.min: must be a finite number, got '1e-5'",
        ),
        (
            spec_with(parameters={"x": {"distribution": "int_uniform", "min": 0.5, "max": 3}}),
            "parameters.x.min: must be an integer for int_uniform, got 0.5",
        ),
        (
            spec_with(parameters={"x": {"values": ["a", "b"], "probabilities": [0.5, 0.6]}}),
            "parameters.x.probabilities: must sum to 1, got [0.5, 0.6]",
        ),
        (
            spec_with(parameters={"x": {"values": ["a", "b"], "probabilities": [1.0]}}),
            "parameters.x.probabilities: must be a list as long as values (2), got 1 item(s)",
        ),
        (
            spec_with(parameters={"x": {"values": []}}),
            "parameters.x.values: must be a non-empty list, got []",
        ),
        (spec_with(parameters={"1x": {"value": 1}}), "parameters.1x: parameter names must match"),
        (
            spec_with(parameters={"m": {"parameters": {"x": {"min": 3, "max": 1}}}}),
            "parameters.m.parameters.x.min: must be < max",
        ),
        (
            spec_with(parameters={"m": {"parameters": {"a": {"value": 1}}, "value": 2}}),
            "parameters.m.value: cannot sit next to",
        ),
        (
            spec_with(parameters={"a.b": {"value": 1}, "a": {"parameters": {"b": {"value": 2}}}}),
            "must have a unique dotted name",
        ),
        (
            spec_with(method="grid", parameters={"x": {"min": 0.0, "max": 1.0}}),
            "parameters.x: must be discrete for method grid (values, value, int_uniform or q_uniform), "
            "got the continuous distribution uniform",
        ),
        (
            spec_with(method="grid", parameters={"x": {"values": [1, 2], "probabilities": [0.5, 0.5]}}),
            "parameters.x.probabilities: must be absent for method grid",
        ),
        (spec_with(method="bayes"), "metric: is required when method is bayes"),
        (spec_with(early_terminate={"type": "hyperband", "min_iter": 3}), "early_terminate: needs a metric"),
        (
            spec_with(
                metrics=[{"name": "a"}, {"name": "b"}], early_terminate={"type": "hyperband", "min_iter": 3}
            ),
            "early_terminate: cannot be used with several objectives",
        ),
        (
            spec_with(metric={"name": "l"}, early_terminate={"type": "hyperband", "max_iter": 27}),
            "early_terminate.s: is required with max_iter",
        ),
        (
            spec_with(metric={"name": "l"}, early_terminate={"type": "hyperband", "min_iter": 3, "eta": 1}),
            "early_terminate.eta: must be a number > 1, got 1",
        ),
        (
            spec_with(
                metric={"name": "l"}, early_terminate={"type": "hyperband", "max_iter": 9, "min_iter": 1}
            ),
            "early_terminate.s: is required with max_iter",
        ),
        (
            spec_with(metric={"name": "l"}, early_terminate={"type": "hyperband", "max_iter": 2, "s": 2}),
            "early_terminate.max_iter: must be >= eta (3) so that at least one band (max_iter / eta) exists",
        ),
        (
            spec_with(metric={"name": "l"}, early_terminate={"type": "hyperband"}),
            "early_terminate: must give min_iter, or max_iter and s",
        ),
        (
            spec_with(metric={"name": "l"}, early_terminate={"type": "asha", "reduction_factor": 1}),
            "early_terminate.reduction_factor: must be an integer >= 2, got 1",
        ),
        (
            spec_with(metric={"name": "l"}, early_terminate={"type": "median", "n_warmup": 1}),
            "early_terminate.n_warmup: unknown key; did you mean 'n_warmup_steps'?",
        ),
        (
            spec_with(metric={"name": "l"}, early_terminate={"type": "hyperbnd"}),
            "early_terminate.type: must be one of hyperband, asha, median, got 'hyperbnd'; "
            "did you mean 'hyperband'?",
        ),
        (spec_with(metric={"goal": "minimize"}), "metric.name: is required"),
        (
            spec_with(metric={"name": "l", "goal": "minimise"}),
            "metric.goal: must be one of minimize, maximize, got 'minimise'; did you mean 'minimize'?",
        ),
        (spec_with(metrics=[{"name": "a"}]), "metrics: must be a list of at least 2 metric mappings"),
        (
            spec_with(metric={"name": "a"}, metrics=[{"name": "a"}, {"name": "b"}]),
            "metrics: cannot be combined with metric",
        ),
        (spec_with(run_cap=0), "run_cap: must be an integer >= 1, got 0"),
        (spec_with(command="python train.py"), "command: must be a non-empty list"),
        (spec_with(kind="job"), "kind: must be sweep, got 'job'"),
        (
            spec_with(sweeper={"trainer": "train"}),
            "sweeper.trainer: must be a 'package.module:function' path, got 'train'",
        ),
        (
            spec_with(sweeper={"trainer": "a:b:c"}),
            "sweeper.trainer: must be a 'package.module:function' path",
        ),
        (
            spec_with(program="t.py", sweeper={"trainer": "a:b"}),
            "sweeper.trainer: cannot be combined with program",
        ),
        (
            spec_with(command=["python", "t.py"], sweeper={"trainer": "a:b"}),
            "sweeper.trainer: cannot be combined with command",
        ),
        (spec_with(method="bayes", metric=None), "metric: is required when method is bayes"),
        (spec_with(sweeper={"trainr": "a:b"}), "sweeper.trainr: unknown key; did you mean 'trainer'?"),
        (
            spec_with(sweeper={"resources": {"gpu": 1}}),
            "sweeper.resources.gpu: unknown key; did you mean 'gpus'?",
        ),
        (
            spec_with(sweeper={"resources": {"gpus": -1}}),
            "sweeper.resources.gpus: must be a number >= 0, got -1",
        ),
        (
            spec_with(sweeper={"resources": {"memory": "4 parsecs"}}),
            "sweeper.resources.memory: must be a positive number of bytes",
        ),
        (
            spec_with(sweeper={"sampler": "cmaes"}),
            "sweeper.sampler: must be one of auto, tpe, gp, got 'cmaes'",
        ),
        (spec_with(sweeper={"max_concurrent": 0}), "sweeper.max_concurrent: must be an integer >= 1, got 0"),
        (spec_with(sweeper={"timeout": 0}), "sweeper.timeout: must be a number > 0, got 0"),
        (
            spec_with(sweeper={"trackers": [{"options": 1}]}),
            "sweeper.trackers.0: must be a tracker name or a mapping",
        ),
        (spec_with(sweeper=[]), "sweeper: must be a mapping of sweeper settings, got []"),
        ([1, 2], "<mapping>: <root>: must be a mapping of sweep settings"),
    ],
)
def test_located_errors(data: Any, expected: str) -> None:
    messages = issues_of(data)
    assert any(expected in message for message in messages), messages
    assert all(message.startswith("<mapping>: ") for message in messages)


def test_every_error_is_collected_in_one_pass() -> None:
    messages = issues_of(
        {
            "method": "bayes",
            "parameters": {"a": {"min": 3, "max": 1}, "b": {"values": []}},
            "early_terminate": {"type": "asha"},
            "sweeper": {"trainer": "nope", "retries": -1},
            "colour": "blue",
        }
    )
    assert len(messages) == 7, messages
    assert messages[0].startswith("<mapping>: colour: unknown key")


def test_yaml_syntax_errors_are_located(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("method: grid\nparameters:\n  x: {values: [1, 2}\n")
    with pytest.raises(
        SpecError,
        match=r"broken\.yaml: line 3, column 20: YAML syntax error: expected .,. or .\]., but got .}.",
    ):
        load_spec(path)


def test_unreadable_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"missing\.yaml: <root>: must be a readable UTF-8 file"):
        load_spec(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(
        SpecError, match=r"empty\.yaml: <root>: must be a mapping of sweep settings .*, got None"
    ):
        load_spec(empty)
    with pytest.raises(SpecError, match=r"<root>: must be a readable UTF-8 file, got: embedded null byte"):
        load_spec("bad\x00name.yaml")


@pytest.mark.parametrize("name", ["grid", "random", "bayes"])
def test_example_specs_are_valid(name: str) -> None:
    spec = load_spec(Path(__file__).parents[2] / "sweeps" / f"{name}.yaml")
    assert spec.method == name
    assert spec.sweeper.trainer == "trainers.functions:branin"
    assert {p.name for p in spec.parameters} == {"x1", "x2"}


def test_duplicate_yaml_keys_are_located(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("method: random\nparameters:\n  lr: {min: 0.0, max: 1.0}\n  lr: {min: 0.0, max: 2.0}\n")
    with pytest.raises(
        SpecError, match=r"dup\.yaml: line 4, column 3: YAML syntax error: found duplicate key 'lr'"
    ):
        load_spec(path)


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("method: random\nparameters:\n  a: &u {min: 0.0, max: 1.0}\n  b: {<<: *u, max: 5.0}\n")
    by_name = {p.name: p for p in load_spec(path).parameters}
    assert (by_name["b"].min, by_name["b"].max) == (0.0, 5.0)


def test_values_must_be_plain_data_to_be_stored(tmp_path: Path) -> None:
    path = tmp_path / "date.yaml"
    path.write_text("method: random\nparameters:\n  day: {value: 2024-01-01}\n  x: {values: [2024-01-02]}\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [issue.path for issue in info.value.issues] == ["parameters.x.values.0"]
    path.write_text("method: random\nparameters:\n  day: {value: 2024-01-01}\n")
    with pytest.raises(SpecError, match=r"parameters\.day\.value: must be plain data .*, got datetime\.date"):
        load_spec(path)
