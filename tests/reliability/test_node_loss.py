"""A Ray worker node dies mid-sweep: its trials fail as "node lost", are re-run, the sweep finishes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("node_loss_script.py")


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_node_removed_while_its_trials_run_loses_no_grid_point(tmp_path: Path) -> None:
    # Its own cluster (head + two GPU workers) in its own process: the session's Ray is untouched.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], check=False, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    trials = result["trials"]
    assert result["on_doomed"], "no trial ran on the node before it was removed"
    assert result["state"] == "finished", result
    assert not [t for t in trials if t["state"] in ("RUNNING", "WAITING")]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert sorted(t["x"] for t in complete) == [0, 1, 2, 3, 4, 5]  # every point once
    lost = [t for t in trials if t["state"] == "FAIL"]
    assert lost and all(t["reason"].startswith("node lost: NodeDiedError") for t in lost)
    for t in lost:  # each lost trial was re-run with the same params
        rerun = [r for r in complete if r["retry_of"] == t["number"]]
        assert [r["x"] for r in rerun] == [t["x"]]
