"""A long-lived worker process ends what each trial left behind, and looks for it only when there is any."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import os, subprocess, time
    from sweeper.worker import reaper

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                return stat.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except FileNotFoundError:
            return False

    looked = []
    original = reaper.children
    reaper.children = lambda pid, **kw: looked.append(pid) or original(pid, **kw)

    print("children at the start:", reaper.has_children())
    with reaper.trial_processes():  # a trial that starts no process: /proc is never read
        pass
    print("looked in /proc:", len(looked))

    kept = subprocess.Popen(["sleep", "60"])  # the worker's own, from before the trial
    with reaper.trial_processes():
        left = subprocess.Popen(["setsid", "sleep", "60"])  # the trial's, left running
        time.sleep(0.2)
    print("the trial's child ended:", not alive(left.pid), "the worker's kept:", alive(kept.pid))
    kept.kill()
    print("still the worker's to wait for:", kept.wait() == -9)
    print("children at the end:", reaper.has_children())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the subreaper and /proc are Linux's")
def test_a_trial_that_started_no_process_costs_no_look_in_proc_and_one_that_did_is_cleaned_up() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "children at the start: False",
        "looked in /proc: 0",
        "the trial's child ended: True the worker's kept: True",
        "still the worker's to wait for: True",
        "children at the end: False",
    ]
