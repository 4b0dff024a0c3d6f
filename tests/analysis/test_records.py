"""Trial and agent records: an agent that has left is shown as such at once; a record's JSON text is
the one its ``to_dict`` makes, however it is encoded."""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from collections import OrderedDict
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import sweeper
from sweeper.analysis.records import TrialRecord
from sweeper.cli import main


def _train(config: dict[str, float], trial: sweeper.Trial) -> float:
    return (config["x"] - 1.0) ** 2


def test_a_finished_agent_is_not_active(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"journal://{tmp_path / 'journal.log'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [0.0, 1.0]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=_train, storage=url, executor="local")

    [agent] = sweeper.load(sweep_id, storage=url).agents
    assert agent.id == summary.agent_id
    assert agent.stopped_at is not None and not agent.is_active()
    status = json.loads(CliRunner().invoke(main, ["status", sweep_id, "--storage", url, "--json"]).stdout)
    assert status["agents"][0]["active"] is False
    assert status["agents"][0]["stopped_at"] is not None


class Color(enum.Enum):
    RED = 1


class Shade(str, enum.Enum):
    DARK = "dark"


NASTY: list[dict[str, Any]] = [
    {},
    {"config": {"lr": 0.1, "model": {"depth": 4, "widths": (64, {"a": 1})}}, "metrics": {"loss": 0.5}},
    {"config": {"lr": float("nan")}, "metrics": {"loss": float("inf"), "neg": float("-inf")}},
    {"values": (0.5, float("inf"))},
    {"intermediate_values": ((1, 0.5), (2, float("nan")))},
    {"config": {1: "int key", 2.5: "float key"}},
    {"config": {True: "bool key", None: "none key"}},  # json writes true/null, str() True/None
    {"metrics": {False: 0.5}},
    {"params": {None: 1}},
    {"tracker_runs": {True: "x"}},
    {"config": {"deep": [{"x": [{False: 1}]}]}},
    {"config": {"deep": ({"x": ({None: 1},)},)}},
    {"config": OrderedDict([(True, 1)])},  # a dict subclass the encoder writes as a dict
    {"config": MappingProxyType({"a": 1})},  # a mapping the encoder does not know
    {"config": {"when": datetime(2026, 1, 2, 3, 4, 5)}},
    {"metrics": {"tags": {"a", "b"} - {"b"}}},  # a set: str() of it
    {"metrics": {"np": np.float64(0.25), "npi": np.int64(3), "big": 10**30}},
    {"config": {"unicode": "täst ✓\u202e", "ctrl": "a\x1b[2Jb"}},
    {"config": {"id": uuid.UUID(int=7), "day": date(2026, 1, 2), "tiny": 1e-05, "huge": 1e300}},
    {"config": {"x": Color.RED}, "metrics": {"s": Shade.DARK}},
]


def assert_text_of_to_dict(record: TrialRecord) -> None:
    text = record.to_json()
    assert text.isascii() and "\n" not in text

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} in strict JSON")

    reference = json.dumps(record.to_dict(), allow_nan=False, default=str)
    # Dumped again: the same values in the same order, whatever the spacing and float spelling.
    assert json.dumps(json.loads(text, parse_constant=strict)) == json.dumps(json.loads(reference))


@pytest.mark.parametrize("odd", NASTY)
def test_to_json_is_the_text_of_to_dict(odd: dict[str, Any]) -> None:
    """The fast encoder writes the values ``json.dumps(record.to_dict(), allow_nan=False, default=str)``
    writes, in their order, as strict one-line ASCII JSON."""
    fields: dict[str, Any] = {
        "number": 3,
        "state": "complete",
        "values": (0.5, 2.0),
        "config": {"lr": 0.1},
        "params": {"lr": 0.1, "model.depth": 4},
        "intermediate_values": ((1, 0.25),),
        "tracker_runs": {"jsonl": "runs/3.jsonl"},
        "started_at": datetime(2026, 1, 1, 12, 0, 0, 5),
        "duration_s": 1.5,
        "tracker_errors": ("mlflow: down",),
    }
    record = TrialRecord(**{**fields, **odd})
    assert_text_of_to_dict(record)


def test_records_of_a_storage_have_every_field_and_print_the_same(tmp_path: Path) -> None:
    """``to_record`` fills the fields without ``__init__``: the record is the one ``__init__`` makes."""
    url = f"journal://{tmp_path / 'journal.log'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [0.0, 1.0, 2.0]}}}
    sweep_id = sweeper.sweep(spec, storage=url)
    sweeper.agent(sweep_id, function=_train, storage=url, executor="local", count=2)
    results = sweeper.load(sweep_id, storage=url)
    assert [t.state for t in results.trials] == ["complete", "complete", "waiting"]
    for record in results.trials:
        fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(TrialRecord)}
        assert record == TrialRecord(**fields)
        assert set(vars(record)) == set(fields)
        assert_text_of_to_dict(record)
