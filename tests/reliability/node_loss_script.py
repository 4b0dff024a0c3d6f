"""Run by test_node_loss.py in its own process: a 3-node Ray cluster loses a worker node mid-sweep.

Prints one JSON line: every trial's state, params, attempt and fail reason, and the agent summary.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import optuna
import ray
from ray.cluster_utils import Cluster

import sweeper
from sweeper.engine.agent import AgentSummary
from sweeper.storage.urls import open_storage


def train(config: dict[str, Any], trial: Any) -> float:
    """Mark which node runs this attempt, then hold until released (so a node dies mid-trial)."""
    node = ray.get_runtime_context().get_node_id()
    marks = Path(config["marks"])
    (marks / f"{trial.number}-{trial.attempt}-{node}").write_text("")
    deadline = time.time() + 60
    while not Path(config["release"]).exists() and time.time() < deadline:
        time.sleep(0.05)
    return float(config["x"])


def main(root: Path) -> None:
    os.chdir(root)  # the agent's project directory
    marks = root / "marks"
    marks.mkdir()
    release = root / "release"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    cluster.add_node(num_cpus=1, num_gpus=2)
    doomed = cluster.add_node(num_cpus=1, num_gpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    url = f"sqlite:///{root / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {
            "x": {"values": [0, 1, 2, 3, 4, 5]},
            "marks": {"value": str(marks)},
            "release": {"value": str(release)},
        },
        "sweeper": {"resources": {"gpus": 1, "cpus": 0.25}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summaries: list[AgentSummary] = []
    agent = threading.Thread(
        target=lambda: summaries.append(sweeper.agent(sweep_id, function=train, storage=url))
    )
    agent.start()
    deadline = time.time() + 120
    while not any(p.name.endswith(doomed.node_id) for p in marks.iterdir()) and agent.is_alive():
        assert time.time() < deadline, "no trial started on the doomed node"
        time.sleep(0.05)
    on_doomed = sorted(p.name for p in marks.iterdir() if p.name.endswith(doomed.node_id))
    cluster.remove_node(doomed)
    release.touch()
    agent.join(timeout=180)
    trials = optuna.load_study(study_name=sweep_id, storage=open_storage(url)).trials
    print(
        json.dumps(
            {
                "on_doomed": on_doomed,
                "summary": summaries[0].ended if summaries else None,
                "state": summaries[0].state if summaries else None,
                "trials": [
                    {
                        "number": t.number,
                        "state": t.state.name,
                        "x": t.params.get("x"),
                        "attempt": t.user_attrs.get("attempt"),
                        "retry_of": t.user_attrs.get("retry_of"),
                        "reason": t.user_attrs.get("fail_reason"),
                    }
                    for t in trials
                ],
            }
        )
    )
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
