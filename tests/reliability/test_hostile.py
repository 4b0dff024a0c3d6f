"""Hostile or broken input: trainers that misbehave, shell metacharacters, fuzzed specs."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import hostile_trainers
import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState

import sweeper
from sweeper.engine.flapping import FlapPolicy
from sweeper.errors import SpecError
from sweeper.spec.model import SweepSpec
from sweeper.spec.reader import load_spec
from sweeper.storage.urls import open_storage

TYPE_ERROR = "TypeError: a trainer must return a number, a mapping of metrics or None, got "
NO_VALUE = "logged or returned no finite value of loss"

# mode -> (final state, value when complete / start of the fail reason when failed)
EXPECTED: dict[str, tuple[TrialState, Any]] = {
    "ok": (TrialState.COMPLETE, 1.0),
    "numpy_scalar": (TrialState.COMPLETE, 0.5),
    "numeric_string": (TrialState.COMPLETE, 0.25),  # a number in a string is a number
    "word": (TrialState.FAIL, TYPE_ERROR + "str"),
    "bool": (TrialState.FAIL, TYPE_ERROR + "bool"),
    "list": (TrialState.FAIL, TYPE_ERROR + "list"),
    "object": (TrialState.FAIL, TYPE_ERROR + "object"),
    "nan": (TrialState.FAIL, NO_VALUE + " (got loss=nan)"),
    "inf": (TrialState.FAIL, NO_VALUE + " (got loss=inf)"),
    "metric_string": (TrialState.FAIL, NO_VALUE + " (got loss='low')"),
    "metric_nan": (TrialState.FAIL, NO_VALUE + " (got loss=nan)"),
    "non_string_keys": (TrialState.FAIL, NO_VALUE),
    "huge_dict": (TrialState.COMPLETE, 0.5),
    "garbage_logs": (TrialState.COMPLETE, 0.3),  # unusable values are skipped, the good one counts
    "prints_megabytes": (TrialState.COMPLETE, 0.75),
    "never_returns": (TrialState.FAIL, "timeout: trial ran past sweeper.timeout (3 s)"),
    "sys_exit": (TrialState.FAIL, "SystemExit: 3"),
}


def test_every_hostile_trainer_gets_a_clear_outcome_and_the_sweep_survives(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    url = f"journal://{project / 'j.log'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"mode": {"values": list(EXPECTED)}},
        "sweeper": {"timeout": 3},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    # Twelve trainer failures in a row would look like a broken machine: this test is not about that.
    no_flap = FlapPolicy(streak=0)
    summary = sweeper.agent(
        sweep_id, function=hostile_trainers.hostile, storage=url, executor="local", flap_policy=no_flap
    )
    printed = capfd.readouterr()
    assert len(printed.out) > 2_000_000 and len(printed.err) > 2_000_000

    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    assert len(trials) == len(EXPECTED)  # nothing re-queued: each failure is the trainer's own
    for trial in trials:
        mode = trial.params["mode"]
        state, expected = EXPECTED[mode]
        assert trial.state == state, (mode, trial.user_attrs.get("fail_reason"))
        if state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(expected), mode
        else:
            assert trial.user_attrs["fail_reason"].startswith(expected), (mode, trial.user_attrs)
    by_mode = {t.params["mode"]: t for t in trials}
    assert len(by_mode["huge_dict"].user_attrs["metrics"]) == 50_001  # stored whole
    garbage = by_mode["garbage_logs"].user_attrs["metrics"]
    assert garbage["loss"] == 0.3 and isinstance(garbage["acc"], str)  # kept as its repr
    assert summary.state == "finished"
    complete = sum(state == TrialState.COMPLETE for state, _ in EXPECTED.values())
    assert (summary.complete, summary.failed) == (complete, len(EXPECTED) - complete)


ARGV_ECHO = """
import json
import pathlib
import sys

import sweeper

run = sweeper.init()
pathlib.Path(run.config["out"], f"{run.number}.json").write_text(json.dumps(sys.argv[1:]))
run.log({"loss": 1.0})
"""

PAYLOADS = [
    "$(touch pwned1)",
    "`touch pwned2`; touch pwned3 | touch pwned4 && touch pwned5 # > pwned6",
    "'; touch pwned7; echo '",
    '"; touch pwned8; echo "',
    "a b  * ~ $HOME ${program} --out=/tmp/elsewhere",
    "line\nbreak",
]


def test_program_arguments_with_shell_metacharacters_are_passed_literally(project: Path) -> None:
    (project / "argv_echo.py").write_text(ARGV_ECHO)
    out = project / "out"
    out.mkdir()
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "grid",
        "program": "argv_echo.py",
        "metric": {"name": "loss"},
        "parameters": {"payload": {"values": PAYLOADS}, "out": {"value": str(out)}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, storage=url, executor="local")

    assert summary.complete == len(PAYLOADS), summary.line()
    seen = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert sorted(argv[argv.index(f"--out={out}") - 1] for argv in seen) == sorted(
        f"--payload={payload}" for payload in PAYLOADS
    )
    assert not [p for p in project.rglob("pwned*")], "a shell interpreted an argument"


# -- fuzzed specs: every input is a spec or a SpecError, never a crash --------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["grid", "random", "bayes", "minimize", "maximize", "log_uniform_values", "q_uniform"]),
)
_keys = st.one_of(
    st.sampled_from(
        [
            "method",
            "metric",
            "metrics",
            "name",
            "goal",
            "target",
            "parameters",
            "values",
            "value",
            "min",
            "max",
            "q",
            "mu",
            "sigma",
            "distribution",
            "probabilities",
            "run_cap",
            "early_terminate",
            "type",
            "min_iter",
            "max_iter",
            "eta",
            "s",
            "program",
            "command",
            "sweeper",
            "retries",
            "timeout",
            "resources",
            "gpus",
            "trackers",
        ]
    ),
    st.text(max_size=8),
)
_data = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=5)),
    max_leaves=25,
)

VALID = {
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "run_cap": 5,
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
        "layers": {"values": [1, 2, 3]},
        "opt": {"parameters": {"name": {"value": "adam"}}},
    },
    "early_terminate": {"type": "hyperband", "min_iter": 3},
    "sweeper": {"retries": 1, "timeout": 60},
}


def _set_path(tree: Any, path: list[str], value: Any) -> Any:
    if not path or not isinstance(tree, dict):
        return value
    head, *rest = path
    out = dict(tree)
    out[head] = _set_path(tree.get(head, {}), rest, value)
    return out


def _paths(tree: Any, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    found = [list(prefix)]
    if isinstance(tree, dict):
        for key, child in tree.items():
            found += _paths(child, (*prefix, key))
    return found


def _check(raw: Any) -> None:
    try:
        spec = load_spec(raw)
    except SpecError as exc:
        assert str(exc).strip(), "a SpecError must say what is wrong"
        for issue in exc.issues:
            assert issue.message
        return
    assert isinstance(spec, SweepSpec)
    space = spec.space
    params = space.sample_params(random.Random(0))
    distributions = space.distributions()
    for name, value in params.items():
        assert distributions[name]._contains(distributions[name].to_internal_repr(value))
    config = space.to_config(params)
    assert isinstance(config, dict)
    for value in params.values():
        assert not (isinstance(value, float) and math.isnan(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=_data)
def test_fuzzed_specs_are_a_spec_or_a_spec_error(raw: Any) -> None:
    _check(raw)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_specs_are_a_spec_or_a_spec_error(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_paths(VALID)[1:]))
    value = data.draw(_data)
    _check(_set_path(VALID, path, value))
