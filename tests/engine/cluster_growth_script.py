"""Run by test_cluster_growth.py in its own process: a GPU node joins while an agent runs.

Prints one JSON line: each trial's (start, end) times and the agent's summary.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import ray
from ray.cluster_utils import Cluster

import sweeper
from sweeper.engine import executor


def train(config: dict[str, Any], trial: Any) -> float:
    started = time.time()
    time.sleep(1.0)
    Path(config["marks"], str(trial.number)).write_text(json.dumps([started, time.time()]))
    return float(config["x"])


def main(root: Path) -> None:
    os.chdir(root)
    marks = root / "marks"
    marks.mkdir()
    executor._CAPACITY_RECHECK_S = 0.5  # re-read the cluster's size often, so the test stays short
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    cluster.add_node(num_cpus=1, num_gpus=1)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    url = f"sqlite:///{root / 's.db'}"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": list(range(10))}, "marks": {"value": str(marks)}},
        "sweeper": {"resources": {"gpus": 1, "cpus": 0.25}},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    summaries: list[Any] = []
    agent = threading.Thread(
        target=lambda: summaries.append(sweeper.agent(sweep_id, function=train, storage=url))
    )
    agent.start()
    deadline = time.time() + 60
    while len(list(marks.iterdir())) < 2:  # two trials done on the one GPU: now the cluster grows
        assert time.time() < deadline and agent.is_alive(), "the agent ran no trial"
        time.sleep(0.05)
    grown_at = time.time()
    cluster.add_node(num_cpus=1, num_gpus=1)
    agent.join(timeout=120)
    runs = {int(p.name): json.loads(p.read_text()) for p in marks.iterdir()}
    print(
        json.dumps({"grown_at": grown_at, "runs": runs, "ended": summaries[0].ended if summaries else None})
    )
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
