"""What a Ray worker imports to run a trial: sweeper's worker side, not Optuna.

A fresh worker imports the task's module and, deserializing the report channel's address, the
module of its reporter, before its first trial ends: a quarter of a second here when they
imported Optuna. Checked in a fresh interpreter, as a worker starts: the session's Ray workers are
shared by every test and hold whatever earlier tests imported.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

from sweeper.worker.task import Objective, TrackerSpec, TrialTask

WORKER = textwrap.dedent(
    """
    import json, pickle, sys
    import sweeper.engine.ray_task  # the task's function, as Ray loads it
    import sweeper.engine.report_channel  # the reporter, loaded with the channel's address
    from sweeper.worker.trial import execute_trial

    class Reporter:  # the reporter protocol, without Ray
        def report(self, trial_id, step, value):
            return False

        def started(self, trial_id):
            pass

    outcome = execute_trial(pickle.loads(sys.stdin.buffer.read()), Reporter())
    heavy = sorted(m for m in ("optuna", "numpy", "sqlalchemy", "scipy") if m in sys.modules)
    print(json.dumps({"state": outcome.state, "heavy": heavy}))
    """
)


def test_a_trial_runs_in_a_worker_without_optuna(tmp_path: Path) -> None:
    (tmp_path / "plain_trainer.py").write_text(
        "def train(config, trial):\n"
        "    for step in range(3):\n"
        "        trial.log({'loss': 1.0 / (step + 1)}, step=step)\n"
        "    return 1.0 / 3\n"
    )
    task = TrialTask(
        sweep_id="abcdefgh",
        sweep_name="imports",
        trial_id=0,
        number=0,
        params={"x": 1},
        config={"x": 1},
        objectives=(Objective("loss"),),
        checkpoint_dir=str(tmp_path / "checkpoint"),
        sweep_dir=str(tmp_path / "sweep"),
        trainer="plain_trainer:train",
        trackers=(TrackerSpec("jsonl"),),  # the default tracker
        workdir=str(tmp_path),
    )
    ran = subprocess.run(
        [sys.executable, "-c", WORKER],
        input=pickle.dumps(task),
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    )
    assert json.loads(ran.stdout.decode().splitlines()[-1]) == {"state": "complete", "heavy": []}
