"""A custom scheduler on a real local Ray: the space is asked in the agent, the workers get configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import search_trainers
from optuna.trial import TrialState
from scheduler_source import SOURCE, sampler_calls

import sweeper
from sweeper.storage.sweeps import load_study
from sweeper.storage.urls import open_storage

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("ray_trainers")]


@pytest.fixture(autouse=True)
def _scheduler_file(project: Path) -> None:
    """The scheduler source file ``scheduler.py`` in the scratch project (the cwd)."""
    (project / "scheduler.py").write_text(SOURCE)


def test_a_define_by_run_sweep_runs_four_at_a_time_on_ray(project: Path) -> None:
    out = project / "out"
    out.mkdir()
    (project / "scheduler.py").write_text(
        (project / "scheduler.py")
        .read_text()
        .replace('"lr": lr}', f'"lr": lr, "sleep_s": 0.2, "out": {str(out)!r}}}')
    )
    url = f"sqlite:///{project / 's.db'}"
    spec = {
        "method": "custom",
        "metric": {"name": "loss", "goal": "minimize"},
        "run_cap": 8,
        "scheduler": {
            "engine": "optuna",
            "source": "scheduler.py",
            "optimizer": "build_study",
            "search_space": "space",
        },
        "sweeper": {"max_concurrent": 4},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summary = sweeper.agent(sweep_id, function=search_trainers.conditional, storage=url)

    assert (summary.complete, summary.state) == (8, "finished")
    trials = load_study(open_storage(url), sweep_id).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    records = {r["number"]: r for r in (json.loads(p.read_text()) for p in out.glob("*.json"))}
    assert sorted(records) == list(range(8))
    for trial in trials:
        # The worker trained on the config the space returned in the agent (conditionals included).
        assert records[trial.number]["config"] == trial.user_attrs["config"]
    assert {t.user_attrs["config"]["complexity"] for t in trials} == {"shallow", "deep"}
    # The space and the user's sampler ran in the agent (this process), the trainers on Ray workers.
    calls = sampler_calls(project)
    assert {(pid, study) for pid, study, _, _ in calls} == {(os.getpid(), sweep_id)}
    assert {(number, name) for _, _, number, name in calls} == {
        (t.number, n) for t in trials for n in t.params
    }
    assert os.getpid() not in {r["pid"] for r in records.values()}
    # Four at a time, as the trainers saw it: never more, and all four slots were busy at some point.
    # (The storage's timestamps would overlap by one: a freed slot is refilled before its trial is
    # recorded.)
    spans = [(r["start"], r["end"]) for r in records.values()]
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) == 4
