"""The agent keeps as many trials in flight as the cluster can run now, growing when a node joins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("cluster_growth_script.py")


def _max_overlap(runs: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_joining_gpu_node_gets_trials_at_once(tmp_path: Path) -> None:
    # Its own cluster in its own process: the session's Ray is untouched.
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], check=False, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    runs = {int(n): (start, end) for n, (start, end) in result["runs"].items()}
    assert sorted(runs) == list(range(10)), "every grid point ran"
    before = [r for r in runs.values() if r[1] <= result["grown_at"]]
    after = [r for r in runs.values() if r[0] >= result["grown_at"]]
    assert _max_overlap(before) == 1  # one GPU: one trial at a time
    assert _max_overlap(after) == 2  # two GPUs: two at a time, never more
    assert result["ended"] == "sweep exhausted"
