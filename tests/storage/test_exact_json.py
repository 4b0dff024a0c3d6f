"""The journal's decoder gives exactly what ``json.loads`` gives, and takes orjson's path where it can."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from sweeper.storage import exact_json, journal_snapshot
from sweeper.storage.urls import open_storage

# What Optuna's journal writes: json.dumps of dicts, lists, strings, any int, any float.
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_it_reads_what_json_dumps_writes_as_json_loads_does(value: Any) -> None:
    text = json.dumps(value).encode()
    assert repr(exact_json.loads(text)) == repr(json.loads(text))  # repr: NaN, types and order too


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value < 2**64
    if isinstance(value, dict):
        return all(map(_finite, value.values()))
    if isinstance(value, list):
        return all(map(_finite, value))
    return True


@settings(max_examples=400, deadline=None)
@given(values)
def test_what_it_reads_it_writes_back_to_the_same_value(value: Any) -> None:
    read, finite = exact_json.read(json.dumps(value).encode())
    if finite:  # orjson read it: no NaN, no infinity, no integer beyond 64 bits in it
        assert _finite(value)
    written = exact_json.dumps(read, finite=finite)
    assert repr(exact_json.loads(written)) == repr(json.loads(json.dumps(value)))


def test_a_finite_value_is_written_by_orjson_and_the_others_by_the_standard_library() -> None:
    assert exact_json.dumps({"é": [1.5, None]}, finite=True) == '{"é":[1.5,null]}'.encode()
    assert exact_json.dumps({"é": [1.5, None]}, finite=False) == b'{"\\u00e9":[1.5,null]}'
    assert exact_json.dumps([math.nan, math.inf], finite=False) == b"[NaN,Infinity]"
    # What orjson refuses to write goes to the standard library: an integer beyond 64 bits, a key
    # that is not a string, a lone surrogate.
    assert exact_json.dumps([2**70], finite=True) == b"[1180591620717411303424]"
    assert exact_json.dumps({1: 2}, finite=True) == b'{"1":2}'
    assert exact_json.dumps(["\ud800"], finite=True) == b'["\\ud800"]'


@pytest.mark.parametrize(
    "number",
    [2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**63), -(2**63) - 1, -(2**80), 10**18, -(10**18)],
)
def test_integers_at_and_beyond_64_bits_stay_exact(number: int) -> None:
    text = json.dumps([{"big": number}, 0.00019990214350776108]).encode()
    assert exact_json.loads(text) == [{"big": number}, 0.00019990214350776108]
    assert type(exact_json.loads(text)[0]["big"]) is int


def test_plain_text_is_decoded_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(text: bytes) -> None:
        raise AssertionError("the standard decoder was used")

    monkeypatch.setattr(exact_json.json, "loads", refuse)
    # Fractions with a run of 19 digits and more, as Python writes small floats, stay on orjson.
    assert exact_json.loads(b'[{"x": 0.00019990214350776108, "n": 123456789012345678}]') == [
        {"x": 0.00019990214350776108, "n": 123456789012345678}
    ]
    with pytest.raises(AssertionError, match="standard decoder"):
        exact_json.loads(b"[1234567890123456789]")
    with pytest.raises(AssertionError, match="standard decoder"):
        exact_json.loads(b"[NaN]")


def test_a_journal_of_big_integers_opens_to_optunas_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user attr beyond 64 bits, read by the fast replay and from its snapshot, is Optuna's."""
    monkeypatch.setattr(journal_snapshot, "MIN_RECORDS", 0)  # any replay is worth a snapshot here
    path = tmp_path / "journal.log"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))))
    for i in range(3):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(1e-6, 1.0, log=True)})
        trial.set_user_attr("seed", 2**70 + i)
        trial.set_user_attr("low", -(2**63) - 1 - i)
        study.tell(trial, 0.00019990214350776108 * (i + 1))
    reference = JournalStorage(JournalFileBackend(str(path))).get_all_trials(study._study_id)
    for snapshot in (False, True):  # the first open replays the log and saves a snapshot; the second reads it
        assert journal_snapshot.path_of(str(path)).exists() is snapshot
        ours = open_storage(f"journal://{path}").get_all_trials(study._study_id)
        assert [repr(t.__dict__) for t in ours] == [repr(t.__dict__) for t in reference]
        assert ours[2].user_attrs == {"seed": 2**70 + 2, "low": -(2**63) - 3}
        assert not any(math.isnan(t.value or 0.0) for t in ours)
