"""`sweeper.warm_start` and `--warm-start`: every source form, every mistake located."""

from __future__ import annotations

from typing import Any

import pytest

from sweeper.errors import SpecError
from sweeper.spec.model import WarmStart
from sweeper.spec.reader import load_spec, load_warm_start


def spec(warm_start: Any, **top: Any) -> dict[str, Any]:
    return {
        "method": "bayes",
        "metric": {"name": "loss"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
        "sweeper": {"warm_start": warm_start},
        **top,
    }


def test_every_source_form_reads_into_one_warm_start() -> None:
    sources = load_spec(
        spec(
            [
                {"sweep": "k3v9x2ab"},
                {"sweep": "mnist-lr", "storage": "sqlite:///old.db"},
                {"sweep": 12345678},  # a YAML number is an id
                {"export": "results/old.csv"},
                {"mlflow": "mnist"},
                {"mlflow": {"experiment": 3, "tracking_uri": "sqlite:///mlflow.db"}},
                {"wandb": "wandb"},
            ]
        )
    ).sweeper.warm_start
    assert sources == (
        WarmStart("sweep", "k3v9x2ab"),
        WarmStart("sweep", "mnist-lr", storage="sqlite:///old.db"),
        WarmStart("sweep", "12345678"),
        WarmStart("export", "results/old.csv"),
        WarmStart("mlflow", "mnist"),
        WarmStart("mlflow", "3", tracking_uri="sqlite:///mlflow.db"),
        WarmStart("wandb", "wandb"),
    )
    # One source need not be in a list.
    assert load_spec(spec({"export": "a.json"})).sweeper.warm_start == (WarmStart("export", "a.json"),)


@pytest.mark.parametrize(
    ("warm_start", "match"),
    [
        ("old.csv", r"sweeper\.warm_start: must be a list of sources such as \{sweep: ID_OR_NAME"),
        (
            [{"sweep": "a", "export": "b"}],
            r"sweeper\.warm_start\.0: must name exactly one of .*got sweep, export",
        ),
        ([{"swep": "a"}], r"sweeper\.warm_start\.0: must name exactly one of sweep, export, mlflow, wandb"),
        (
            [{"sweep": "a", "storag": "x"}],
            r"sweeper\.warm_start\.0\.storag: unknown key; did you mean 'storage'",
        ),
        ([{"export": "a", "storage": "x"}], r"sweeper\.warm_start\.0\.storage: unknown key"),
        ([{"mlflow": {"tracking_uri": "x"}}], r"warm_start\.0\.mlflow\.experiment: is required"),
        ([{"mlflow": {"experiment": "e", "uri": "x"}}], r"warm_start\.0\.mlflow\.uri: unknown key"),
        ([{"wandb": ""}], r"sweeper\.warm_start\.0\.wandb: must be a non-empty string, got ''"),
        ([{"sweep": "a"}, {"export": ["x"]}], r"sweeper\.warm_start\.1\.export: must be a non-empty string"),
    ],
)
def test_a_malformed_source_is_a_located_error(warm_start: Any, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        load_spec(spec(warm_start))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"method": "grid", "parameters": {"x": {"values": [1, 2]}}}, "a grid runs every point"),
        (
            {"method": "random", "metric": None},
            r"priors are learned from and ranked by the metric; add a `metric:`",
        ),
    ],
)
def test_a_sweep_that_cannot_learn_from_priors_refuses_them(changes: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=r"sweeper\.warm_start: cannot be used here: " + match):
        load_spec({k: v for k, v in spec([{"sweep": "old"}], **changes).items() if v is not None})


def test_command_line_sources_read_as_the_spec_reads_them() -> None:
    assert load_warm_start(
        [
            "sweep:k3v9x2ab",
            "export:old.csv",
            "mlflow:mnist",
            "wandb:./wandb",
            "{sweep: a, storage: sqlite:///x.db}",
        ]
    ) == (
        WarmStart("sweep", "k3v9x2ab"),
        WarmStart("export", "old.csv"),
        WarmStart("mlflow", "mnist"),
        WarmStart("wandb", "./wandb"),
        WarmStart("sweep", "a", storage="sqlite:///x.db"),
    )
    with pytest.raises(SpecError) as caught:
        load_warm_start(["sweep:", "old.csv", "{sweep: [}"])
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("--warm-start: 0: must be one source") and lines[0].endswith("got 'sweep:'")
    assert lines[1].startswith("--warm-start: 1: must be one source")
    assert lines[2].startswith("--warm-start: 2: must be one source") and "not a YAML mapping" in lines[2]


def test_command_line_sources_follow_the_specs_rules() -> None:
    grid = load_spec({"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2]}}})
    with pytest.raises(
        SpecError, match=r"--warm-start: <root>: cannot be used with sweep spec .*a grid runs"
    ):
        load_warm_start(["sweep:old"], spec=grid)
