"""Property tests: whatever mapping a user writes, load_spec loads it or raises located SpecIssues."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sweeper import SpecError, SweepSpec, load_spec
from sweeper.spec._settings import SWEEPER_KEYS
from sweeper.spec.laws import DISTRIBUTIONS
from sweeper.spec.reader import METHODS, TOP_LEVEL_KEYS

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-10, max_value=10),
    st.text(max_size=8),
    st.sampled_from([*DISTRIBUTIONS, *METHODS, "hyperband", "asha", "median", "4GB", "a.b:c", "1e-5"]),
)
anything = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)
param_keys = st.sampled_from(
    [
        "distribution",
        "min",
        "max",
        "q",
        "mu",
        "sigma",
        "a",
        "b",
        "value",
        "values",
        "probabilities",
        "parameters",
    ]
)
numbers = st.one_of(
    st.integers(-20, 20), st.floats(-20, 20), st.floats(1e-3, 5), st.sampled_from([0, 1, 0.5, 1e308])
)


def parameter_settings(depth: int) -> st.SearchStrategy[dict[str, Any]]:
    value = st.one_of(
        numbers,
        st.sampled_from(list(DISTRIBUTIONS)),
        st.lists(numbers | st.text(max_size=3) | st.booleans(), max_size=4),
        anything,
    )
    if depth > 0:
        value = value | st.dictionaries(
            st.from_regex(r"[a-z_][a-z0-9_.]{0,4}", fullmatch=True),
            st.deferred(lambda: parameter_settings(depth - 1)),
            max_size=3,
        )
    return st.dictionaries(param_keys, value, max_size=5)


parameters = st.dictionaries(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,5}", fullmatch=True) | st.text(max_size=4),
    parameter_settings(2) | anything,
    max_size=4,
)
sweeper_block = st.dictionaries(st.sampled_from([*SWEEPER_KEYS, "gpus"]), anything | numbers, max_size=4)
specs = st.fixed_dictionaries(
    {"method": st.sampled_from(METHODS) | anything, "parameters": parameters},
    optional={
        "metric": st.fixed_dictionaries({"name": st.text(max_size=4)}, optional={"goal": anything})
        | anything,
        "early_terminate": st.dictionaries(
            st.sampled_from(["type", "min_iter", "max_iter", "s", "eta", "strict", "min_resource"]),
            anything | numbers,
        ),
        "sweeper": sweeper_block | anything,
        "metrics": st.lists(st.fixed_dictionaries({"name": st.text(max_size=3)}), max_size=3) | anything,
        **{
            key: anything
            for key in TOP_LEVEL_KEYS
            if key not in ("method", "parameters", "metric", "sweeper")
        },
    },
)
free_form = st.dictionaries(st.sampled_from(TOP_LEVEL_KEYS) | st.text(max_size=5), anything, max_size=6)


def _check(data: Any) -> None:
    try:
        spec = load_spec(data)
    except SpecError as exc:
        assert exc.issues
        for issue in exc.issues:
            assert issue.source == "<mapping>"
            assert issue.path and issue.path != "<root>", issue
            assert issue.message
        return
    assert isinstance(spec, SweepSpec)
    _exercise(spec)


def _exercise(spec: SweepSpec) -> None:
    """A spec that loads must give a working space: draws inside their distributions, configs built."""
    space = spec.space
    distributions = space.distributions()
    rng = np.random.default_rng(0)
    for _ in range(5):
        params = space.sample_params(rng)
        for name, value in params.items():
            assert distributions[name]._contains(distributions[name].to_internal_repr(value)), (name, value)
        space.to_config(params)
    if spec.method == "grid" and space.grid_size() <= 500:
        for point in space.grid():
            space.to_config(point)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_structured_specs_load_or_raise_located_errors(data: dict[str, Any]) -> None:
    _check(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(free_form)
def test_free_form_mappings_load_or_raise_located_errors(data: dict[Any, Any]) -> None:
    _check(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(DISTRIBUTIONS)), st.dictionaries(param_keys, numbers, max_size=4))
def test_every_distribution_with_random_numbers(distribution: str, extra: dict[str, Any]) -> None:
    _check({"method": "random", "parameters": {"p": {**extra, "distribution": distribution}}})


yaml_fragments = st.sampled_from(
    [
        "method: grid\n",
        "parameters:\n",
        "  x: {values: [1, 2]}\n",
        "  y: {min: 1e-5, max: 1e-1}\n",
        "- a\n",
        "  ",
        ": ",
        "{",
        "]",
        "!!python/object:os.system ls\n",
        "? [1, 2]\n: 3\n",
        "&a x\n",
        "*a\n",
        "\t",
        "x: 1\n",
    ]
)


@settings(max_examples=150, deadline=None)
@given(st.lists(yaml_fragments | st.text(max_size=5), max_size=8).map("".join))
def test_any_yaml_text_loads_or_raises_located_errors(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            spec = load_spec(path)
        except SpecError as exc:
            assert exc.issues and all(issue.source == str(path) and issue.path for issue in exc.issues)
            return
    _exercise(spec)
