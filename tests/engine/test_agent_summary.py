"""The agent's final summary names why trials failed: a line per common reason, with counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sweeper
from sweeper.engine.agent import End

SPEC = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": list(range(6))}}}


def _flaky(config: dict[str, Any], trial: Any) -> float:
    if config["x"] % 3 == 0:
        raise FileNotFoundError("data/train.csv\nmore detail on the next line")
    if config["x"] == 4:
        raise ValueError("learning rate too high")
    return float(config["x"])


def test_the_summary_names_the_commonest_fail_reasons_with_counts(project: Path) -> None:
    url = f"sqlite:///{project / 's.db'}"
    sweep_id = sweeper.sweep(SPEC, storage=url)
    summary = sweeper.agent(sweep_id, function=_flaky, storage=url, executor="local")

    assert summary.end is End.SWEEP_EXHAUSTED and summary.failed == 3
    assert summary.failures == (
        ("FileNotFoundError: data/train.csv", 2),
        ("ValueError: learning rate too high", 1),
    )
    lines = summary.line().splitlines()
    assert lines[0].startswith(f"sweep {sweep_id}: 6 trials (3 complete, 0 pruned, 3 failed)")
    assert lines[1:] == [
        "  2 failed: FileNotFoundError: data/train.csv",
        "  1 failed: ValueError: learning rate too high",
    ]
