"""A quick start: ``sweeper run --count 20`` of no-op trials beside a bare ``ray.init()``, in one run.

Every figure is the wall time of a fresh process, as a user's shell sees it (interpreter start,
imports, Ray's start and shutdown included), the median of the rounds; each round runs every
command once, one after the other, so the machine's load falls on all of them alike:

- bare Ray, ``python -c "import ray; ray.init(); ray.shutdown()"``: Ray's defaults (its dashboard
  too, when its dependencies are installed), the issue's baseline;
- bare Ray as sweeper starts it: ``ray.init(address="local", include_dashboard=False)``;
- ``sweeper run spec.yaml --count 20``: a no-op trainer, 2 at a time, the journal storage, a fresh
  local Ray (started while the sweep is created and the trainer imported);
- the same with ``--executor local`` (no Ray at all);
- the same against a Ray that ``ray start --head`` left running (reused, the project shipped to it);
  the head is started once, outside the timing, and its processes ended by their process group.

Ray's files go to a private ``RAY_TMPDIR``, so no other Ray on the machine is found or disturbed.
Target (issue #13): ``sweeper run --count 20`` <= bare ``ray.init()`` + 1 s.
"""

from __future__ import annotations

import atexit
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import harness
from harness import Figure

SECTION = "1. Orchestration overhead"
COUNT = 20
TRAINER = "def noop(config, trial):\n    return {'value': float(config['x'])}\n"
SPEC = """\
name: quick-start
method: random
metric: {name: value, goal: minimize}
parameters:
  x: {min: 0.0, max: 1.0}
sweeper: {trainer: "noop_trainer:noop", max_concurrent: 2}
"""
BARE = "import ray; ray.init(); ray.shutdown()"
BARE_LIKE_SWEEPER = (
    "import logging, ray; ray.init(address='local', include_dashboard=False, logging_level=logging.WARNING); "
    "ray.shutdown()"
)


TIMEOUT_S = 240


def timed(command: Sequence[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds ``command`` took, start to exit; NaN (and its output on stderr) when it failed or hung.

    Ray's own start hangs now and then on this shared machine (its dashboard's port, say): such a
    round is left out of the medians, and the figure's note counts it.
    """
    began = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        print(f"{' '.join(command)}: no exit within {TIMEOUT_S} s", file=sys.stderr, flush=True)
        return math.nan
    took = time.perf_counter() - began
    if done.returncode != 0:
        print(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}", file=sys.stderr)
        return math.nan
    return took


def _median(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else math.nan


def _spread(values: list[float]) -> str:
    kept = [v for v in values if not math.isnan(v)]
    failed = len(values) - len(kept)
    shown = f"{min(kept):.1f}-{max(kept):.1f} s" if kept else "none finished"
    return f"median of {len(kept)}, {shown}" + (f"; {failed} failed or hung" if failed else "")


class RayHead:
    """``ray start --head --block`` in its own process group, its address recorded under ``ray_tmp``."""

    def __init__(self, ray_tmp: Path, env: dict[str, str]) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        command = [ray, "start", "--head", "--block", "--port=0", "--num-cpus=2", "--include-dashboard=false"]
        self.proc = subprocess.Popen(
            command,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        address_file = ray_tmp / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if address_file.exists() and _answers(address_file.read_text().strip()):
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"ray start exited with {self.proc.returncode}")
            time.sleep(0.2)
        self.stop()
        raise SystemExit("ray start did not come up within 120 s")

    def stop(self) -> None:
        """End every process of the head's group (the head was started in a session of its own)."""
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait)
                time.sleep(1)  # the raylet and GCS leave after the head's process
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                continue
            return


def _answers(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    rounds = 1 if args.quick else 3
    root = harness.scratch_dir("bench-start-")
    (root / "noop_trainer.py").write_text(TRAINER)
    (root / "spec.yaml").write_text(SPEC)
    # A short path: Ray's socket paths must fit in 107 bytes.
    ray_tmp = Path(tempfile.mkdtemp(prefix="swb-", dir="/tmp"))
    if not os.environ.get("BENCH_KEEP"):
        atexit.register(shutil.rmtree, ray_tmp, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "SWEEPER_"))}
    env["RAY_TMPDIR"] = str(ray_tmp)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    python, sweeper = sys.executable, str(Path(sys.executable).with_name("sweeper"))
    run = [sweeper, "run", "spec.yaml", "--count", str(COUNT)]
    times: dict[str, list[float]] = {k: [] for k in ("bare", "like", "run", "local", "reuse")}
    for index in range(rounds):
        times["bare"].append(timed([python, "-c", BARE], root, env))
        times["like"].append(timed([python, "-c", BARE_LIKE_SWEEPER], root, env))
        times["run"].append(timed(run, root, env))
        times["local"].append(timed([*run, "--executor", "local"], root, env))
        head = RayHead(ray_tmp, env)
        try:
            times["reuse"].append(timed(run, root, env))
        finally:
            head.stop()
            # As `ray stop` does: a stale address would send the next bare ray.init() to a dead GCS.
            (ray_tmp / "ray" / "ray_current_cluster").unlink(missing_ok=True)
        print(f"round {index + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
    med = {k: _median(v) for k, v in times.items()}
    spread = {k: _spread(v) for k, v in times.items()}
    gap, like_gap = med["run"] - med["bare"], med["run"] - med["like"]
    figures = [
        Figure(
            SECTION,
            "bare `ray.init()` + `ray.shutdown()`, fresh process (Ray's defaults)",
            f"{med['bare']:.2f} s",
            note=spread["bare"],
        ),
        Figure(
            SECTION,
            "bare `ray.init(address='local', include_dashboard=False)` + shutdown (as sweeper starts Ray)",
            f"{med['like']:.2f} s",
            note=spread["like"],
        ),
        Figure(
            SECTION,
            f"`sweeper run --count {COUNT}` of no-op trials, fresh local Ray, fresh process",
            f"{med['run']:.2f} s ({gap:+.2f} s, {med['run'] / med['bare']:.2f}x bare Ray)",
            "<= bare `ray.init()` + 1 s",
            gap <= 1.0,
            f"{spread['run']}; {like_gap:+.2f} s beside Ray started as sweeper starts it",
        ),
        Figure(
            SECTION,
            f"`sweeper run --count {COUNT} --executor local` (no Ray)",
            f"{med['local']:.2f} s",
            note=spread["local"],
        ),
        Figure(
            SECTION,
            f"`sweeper run --count {COUNT}` on a Ray `ray start` left running (reused, project shipped)",
            f"{med['reuse']:.2f} s",
            note=f"{spread['reuse']}; the head's own start not counted",
        ),
    ]
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
