"""Plain values for JSON: what the event logs and the exports write."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict

import numpy as np

from sweeper.plain import event_json


class _Level(enum.IntEnum):
    HIGH = 2


class _Tagged(str):
    pass


def test_event_json_writes_every_kind_of_value_as_the_event_logs_need() -> None:
    value = {
        "floats": [1.5, float("nan"), float("inf"), -float("inf"), np.float64("inf"), np.float32(0.5)],
        "ints": (1, True, np.int64(7), _Level.HIGH),
        "mapping": OrderedDict([(1, None), ("nested", {"x": (float("-inf"),)})]),
        "text": _Tagged("kept"),
        "other": {1, 2} - {1, 2},
        3: "key made text",
    }
    got = event_json(value)
    assert got == {
        "floats": [1.5, "NaN", "Infinity", "-Infinity", "Infinity", 0.5],
        "ints": [1, True, 7, _Level.HIGH],
        "mapping": {"1": None, "nested": {"x": ["-Infinity"]}},
        "text": "kept",
        "other": "set()",
        "3": "key made text",
    }
    assert type(got["ints"][2]) is int and type(got["floats"][5]) is float  # numpy scalars unwrapped
    assert json.loads(json.dumps(got, allow_nan=False))["ints"] == [1, True, 7, 2]
