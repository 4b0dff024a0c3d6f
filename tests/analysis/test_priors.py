"""Earlier results checked against a new sweep's space: what becomes a prior, and why the rest does not."""

from __future__ import annotations

from typing import Any

import pytest
from optuna.trial import TrialState

from sweeper.analysis.priors import Row, SourceReport, to_prior
from sweeper.spec.reader import load_spec
from sweeper.storage import attrs as keys

SPEC = load_spec(
    {
        "method": "bayes",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "depth": {"values": [2, 4, 8]},
            "units": {"distribution": "q_uniform", "min": 0, "max": 100, "q": 10},
            "opt": {"values": ["adam", "sgd"]},
            "momentum": {"min": 0.0, "max": 0.99, "sweeper_if": {"opt": ["sgd"]}},
            "model": {"parameters": {"norm": {"values": [True, False]}}},
            "seed": {"value": 0},
        },
    }
)
GOOD = {
    "lr": 0.01,
    "depth": 4,
    "units": 30,
    "opt": "sgd",
    "momentum": 0.9,
    "model": {"norm": True},
    "seed": 0,
}


def convert(config: dict[str, Any], metrics: Any = None, state: str = "complete") -> tuple[Any, SourceReport]:
    report = SourceReport("export old.csv")
    row = Row(ref="row 1", config=config, metrics={"loss": 0.5} if metrics is None else metrics, state=state)
    return to_prior(row, SPEC, report), report


# GOOD's params as the sweep's space types them, nested keys flattened.
GOOD_PARAMS = {"lr": 0.01, "depth": 4, "units": 30, "opt": "sgd", "momentum": 0.9, "model.norm": True}


def test_a_result_inside_the_space_becomes_a_prior_with_the_sweeps_distributions() -> None:
    prior, report = convert(GOOD, {"loss": 0.25, "accuracy": 0.9})
    assert prior is not None and not report.skipped
    assert prior.state == TrialState.COMPLETE and prior.values == [0.25]
    assert prior.params == GOOD_PARAMS
    distributions = SPEC.space.distributions()
    assert prior.distributions == {name: distributions[name] for name in prior.params}
    assert prior.user_attrs[keys.PRIOR] == {"source": "export old.csv", "ref": "row 1"}
    assert prior.user_attrs[keys.CONFIG] == GOOD
    assert prior.user_attrs[keys.METRICS] == {"loss": 0.25, "accuracy": 0.9}


def test_text_values_are_read_as_each_parameters_type() -> None:
    # As MLflow keeps params, and CSV cells come: text, flat dotted keys.
    text = {
        "lr": "0.01",
        "depth": "4",
        "units": "30.0",
        "opt": "sgd",
        "momentum": "0.9",
        "model.norm": "True",
    }
    prior, report = convert({**text, "seed": "0"}, {"loss": "0.5"})
    assert prior is not None, report.line()
    assert prior.params == GOOD_PARAMS
    assert type(prior.params["depth"]) is int and type(prior.params["units"]) is int
    assert prior.values == [0.5]


@pytest.mark.parametrize(
    ("change", "example"),
    [
        ({"lr": 0.5}, "lr=0.5 is outside [0.0001, 0.1]"),
        ({"units": 35}, "units=35 is outside [0, 100] in steps of 10"),
        ({"units": 30.5}, "units=30.5 is not an integer"),
        ({"depth": 3}, "depth=3 is not one of 2, 4, 8"),
        ({"lr": "fast"}, "lr=fast is not a number"),
        ({"model": {"norm": "maybe"}}, "model.norm=maybe is not one of true, false"),
        ({"seed": 1}, "seed=1, the sweep fixes 0"),
    ],
)
def test_a_value_the_space_cannot_give_puts_the_result_outside(change: dict[str, Any], example: str) -> None:
    prior, report = convert({**GOOD, **change})
    assert prior is None
    assert report.skipped == {"outside the space": 1}
    assert report.examples["outside the space"] == [f"row 1: {example}"]


def test_conditional_parameters_count_only_where_active() -> None:
    # adam: momentum is inactive, so not missing, and a value for it is ignored (and named).
    prior, report = convert({**GOOD, "opt": "adam", "momentum": 5.0})
    assert prior is not None and "momentum" not in prior.params
    assert report.ignored_keys == {"momentum"}
    # sgd: momentum is active, so it must be there.
    without = {k: v for k, v in GOOD.items() if k != "momentum"}
    prior, report = convert(without)
    assert prior is None and report.examples == {"missing params": ["row 1: no momentum"]}


def test_every_other_reason_is_counted_with_examples() -> None:
    report = SourceReport("mlflow experiment 'old'")
    rows = [
        Row("run a", GOOD, {"loss": 0.1}),
        Row("run b", {**GOOD, "lr": 1.0}, {"loss": 0.1}),
        Row("run c", {k: v for k, v in GOOD.items() if k != "depth"}, {"loss": 0.1}),
        Row("run d", GOOD, {"accuracy": 0.3}),
        Row("run e", GOOD, {"loss": float("nan")}),
        Row("run f", GOOD, {"loss": 0.1}, state="failed"),
        Row("run g", GOOD, {"loss": 0.1}, is_prior=True),
        Row("run h", {**GOOD, "extra": {"epochs": 3}}, {"loss": 0.2}, state="pruned"),
    ]
    priors = [to_prior(row, SPEC, report) for row in rows]
    assert [p is not None for p in priors] == [True, False, False, False, False, False, False, True]
    assert priors[7] is not None and priors[7].state == TrialState.PRUNED and priors[7].values == [0.2]
    report.read, report.loaded = len(rows), 2
    assert report.skipped == {
        "outside the space": 1,
        "missing params": 1,
        "no value for loss": 2,
        "not finished": 1,
        "priors of their source": 1,
    }
    assert report.line() == (
        "2 priors loaded from mlflow experiment 'old' (8 read); 2 no value for loss: run d; run e; "
        "1 outside the space: run b: lr=1.0 is outside [0.0001, 0.1]; 1 missing params: run c: no depth; "
        "1 not finished: run f (failed); 1 priors of their source: run g; "
        "keys not in the space, ignored: extra.epochs"
    )
    stored = report.to_dict()
    assert stored["skipped"]["no value for loss"] == 2 and stored["ignored_keys"] == ["extra.epochs"]


def test_only_a_few_examples_are_kept_and_the_rest_is_said() -> None:
    report = SourceReport("wandb runs")
    for i in range(5):
        to_prior(Row(f"run {i}", {**GOOD, "lr": 1.0}, {"loss": 0.1}), SPEC, report)
    assert report.skipped == {"outside the space": 5}
    assert len(report.examples["outside the space"]) == 3
    assert report.line().endswith("run 2: lr=1.0 is outside [0.0001, 0.1], ...")


def test_a_learning_curve_comes_along_when_it_is_of_the_first_objective() -> None:
    curve = {1: 0.9, 2: 0.6}
    same = Row("trial 1", GOOD, {"loss": 0.5}, intermediate=curve, curve_metric="loss")
    other = Row("trial 2", GOOD, {"loss": 0.5}, intermediate=curve, curve_metric="accuracy")
    report = SourceReport("sweep old")
    first, second = to_prior(same, SPEC, report), to_prior(other, SPEC, report)
    assert first is not None and first.intermediate_values == curve
    assert second is not None and second.intermediate_values == {}


def test_a_multi_objective_prior_needs_every_objective() -> None:
    spec = load_spec(
        {
            "method": "bayes",
            "metrics": [{"name": "loss", "goal": "minimize"}, {"name": "accuracy", "goal": "maximize"}],
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        }
    )
    report = SourceReport("sweep old")
    both = to_prior(Row("trial 0", {"x": 0.5}, {"accuracy": 0.9, "loss": 0.3}), spec, report)
    one = to_prior(Row("trial 1", {"x": 0.5}, {"loss": 0.3}), spec, report)
    assert both is not None and both.values == [0.3, 0.9]
    assert one is None and report.examples == {"no value for accuracy": ["trial 1"]}
