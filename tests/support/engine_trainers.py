"""Trainers the engine tests run: each records what it saw so the tests can assert on it."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not imported in the Ray workers that run these trainers
    import optuna


def quadratic(config: dict[str, Any], trial: Any) -> float:
    """Loss falls with each step toward (x - 1)^2; logs every step so pruners can act.

    ``step_s`` seconds per step (default none): a pruner's answer travels while the trial goes on,
    so a trial that must be stoppable before its last step needs its steps to take some time.
    """
    loss = math.inf
    for step in range(1, int(config.get("steps", 3)) + 1):
        time.sleep(float(config.get("step_s", 0.0)))
        loss = (config["x"] - 1.0) ** 2 + 1.0 / step
        trial.log({"loss": loss, "step_seen": step})
    return loss


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def log_many(config: dict[str, Any], trial: Any) -> float:
    """Logs ``loss`` = 1 / (step + 1) at steps 0 .. ``logs`` - 1, as fast as it can (per-batch logging).

    Writes its resident memory (KiB, /proc) after a tenth of the logs and at the end to ``out``.
    """
    logs = int(config["logs"])
    tenth = 0
    for step in range(logs):
        trial.log({"loss": 1.0 / (step + 1)}, step=step)
        if step + 1 == logs // 10:
            tenth = _rss_kib()
    Path(config["out"]).write_text(json.dumps({"rss_tenth_kib": tenth, "rss_end_kib": _rss_kib()}))
    return 1.0 / logs


def noop(config: dict[str, Any], trial: Any) -> float:
    """Returns at once, logging nothing: what is left is the engine's own cost per trial."""
    return float(config["x"])


def slow_first(config: dict[str, Any], trial: Any) -> float:
    """Trial 0 sleeps ``first_s`` seconds, the others return at once: ``x``. Each leaves a file named
    after its number in the folder ``started`` as it starts."""
    Path(config["started"]).joinpath(str(trial.number)).write_text("1")
    if trial.number == 0:
        time.sleep(float(config["first_s"]))
    return float(config["x"])


def constant(config: dict[str, Any], trial: Any) -> float:
    """Takes any config and returns 0: for sweeps whose points, not results, are under test."""
    return 0.0


def record_gpu(config: dict[str, Any], trial: Any) -> float:
    """Write CUDA_VISIBLE_DEVICES and start/end times; wait until `expect` trials have started.

    The wait makes "this many trials run at once" observable without timing assumptions: if the
    trials could not all run together, none would see the others and the test fails.
    """
    out = Path(config["out"])
    start = time.time()
    (out / f"{trial.number}.start").write_text(str(start))
    deadline = time.time() + float(config.get("wait_s", 60))
    while len(list(out.glob("*.start"))) < int(config["expect"]) and time.time() < deadline:
        time.sleep(0.05)
    seen = len(list(out.glob("*.start")))
    record = {
        "number": trial.number,
        "cvd": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "start": start,
        "end": time.time(),
        "seen": seen,
    }
    (out / f"{trial.number}.json").write_text(json.dumps(record))
    return float(seen)


def misbehave(config: dict[str, Any], trial: Any) -> float:
    """Ends the way `mode` says: ok, raise, nan, silent (no metric), sleep (past the timeout), kill."""
    mode = config["mode"]
    if mode == "raise":
        raise ValueError(f"boom in trial {trial.number}")
    if mode == "nan":
        return float("nan")
    if mode == "silent":
        trial.log({"other": 1.0})
        return None  # type: ignore[return-value]
    if mode == "sleep":
        time.sleep(120)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return 1.0


def flaky(config: dict[str, Any], trial: Any) -> float:
    """Fails on its first attempt, after leaving a file in its checkpoint dir; resumes from it on retry."""
    marker = trial.checkpoint_dir / "state.json"
    if trial.attempt == 0:
        marker.write_text(json.dumps({"number": trial.number}))
        raise RuntimeError("first attempt always fails")
    saved = json.loads(marker.read_text())
    return float(saved["number"]) + config["x"]


def wait_for_file(config: dict[str, Any], trial: Any) -> float:
    """Log once, then run until the file `release` exists (so tests can stop or cancel mid-trial)."""
    release = Path(config["release"])
    trial.log({"loss": 1.0})
    Path(config["started"]).joinpath(str(trial.number)).write_text("1")
    deadline = time.time() + 120
    while not release.exists() and time.time() < deadline:
        time.sleep(0.05)
    return 0.5


def two_objectives(config: dict[str, Any], trial: Any) -> dict[str, float]:
    """A trade-off: loss grows with x while cost falls."""
    x = float(config["x"])
    return {"loss": x, "cost": 1.0 - x}


def writes_outputs(config: dict[str, Any], trial: Any) -> float:
    """Reads a project file and writes files by relative paths, as trainers do (`model.pt`, logs)."""
    seen = Path("input.txt").read_text().strip()  # the project's file, linked into the trial's directory
    Path("model.pt").write_text(f"weights of trial {trial.number} (x={config['x']}, input {seen})")
    Path("logs").mkdir(exist_ok=True)
    Path("logs", "train.log").write_text(f"cwd={Path.cwd()}\n")
    return float(config["x"])


def writes_only_for_two(config: dict[str, Any], trial: Any) -> float:
    """Reads a project file by its relative path in every trial; writes ``model.pt`` only when x == 2."""
    seen = Path("input.txt").read_text().strip()
    if config["x"] == 2.0:
        Path("model.pt").write_text(f"trial {trial.number} read {seen}")
    return float(config["x"]) if seen == "hello" else float("nan")


def crash(config: dict[str, Any], trial: Any) -> float:
    """Takes its process down, or leaves a process behind, the way `mode` says; each process it
    starts, the process running it (``-self``) and that one's parent (``-parent``) write their pids to
    `<pids>/<mode>-<n>` so the tests can check they are gone.

    - exit0: ``os._exit(0)``; segv: a segfault (SIGSEGV); abort: SIGABRT
    - setsid_return: starts ``setsid sleep 600`` (its own session), then completes
    - setsid_hang: the same, then runs past any timeout
    - keyboard_interrupt: raises KeyboardInterrupt; deaf: runs forever, swallowing every exception
    - setsid_exit: forks a child that calls ``os.setsid()`` and sleeps, then ``os._exit(0)``
    - ok: completes
    """
    import subprocess

    mode, pids = config["mode"], Path(config["pids"])
    (pids / f"{mode}-self").write_text(str(os.getpid()))
    (pids / f"{mode}-parent").write_text(str(os.getppid()))
    trial.log({"loss": 2.0})
    if mode == "exit0":
        os._exit(0)
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "abort":
        os.abort()
    if mode == "keyboard_interrupt":
        raise KeyboardInterrupt
    if mode == "deaf":  # swallows whatever is raised in it (a timeout's TrialTerminated too)
        while True:
            with contextlib.suppress(BaseException):
                time.sleep(0.05)
    if mode in ("setsid_return", "setsid_hang"):
        child = subprocess.Popen(["setsid", "sleep", "600"])
        (pids / f"{mode}-0").write_text(str(child.pid))
        if mode == "setsid_hang":
            time.sleep(600)
        return 1.0
    if mode == "setsid_exit":
        ready = pids / f"{mode}-ready"
        pid = os.fork()
        if pid == 0:  # the child: a session of its own, and a grandchild below it
            os.setsid()
            grandchild = subprocess.Popen(["sleep", "600"])
            (pids / f"{mode}-1").write_text(str(grandchild.pid))
            ready.write_text("")
            time.sleep(600)
            os._exit(0)
        (pids / f"{mode}-0").write_text(str(pid))
        while not ready.exists():
            time.sleep(0.01)
        os._exit(0)
    return 0.5


def where(config: dict[str, Any], trial: Any) -> float:
    """Write where the trial runs (its directory, a marker from its environment) to ``config["out"]``."""
    seen = {"cwd": os.getcwd(), "mark": os.environ.get("SWEEPER_TEST_MARK")}
    Path(config["out"]).write_text(json.dumps(seen))
    return 0.0


def preloaded(config: dict[str, Any], trial: Any) -> float:
    """Record which of an installed library and a project module were loaded before the trainer
    imported them, to ``{config["out"]}/{config["x"]}.json``."""
    import sys

    seen = {name: name in sys.modules for name in ("sortedcontainers", "counting")}
    import counting  # noqa: F401 - a project module (tests/support), imported lazily
    import sortedcontainers  # noqa: F401 - an installed library, imported lazily

    (Path(config["out"]) / f"{config['x']}.json").write_text(json.dumps(seen))
    return 0.0


def lane_witness(config: dict[str, Any], trial: Any) -> float:
    """Write which Ray task and process ran the trial, and its GPUs, to ``{config["out"]}/{number}.json``;
    report three values on the way."""
    import ray

    for step in range(3):
        trial.log({"loss": float(config.get("i", 0)) + step}, step=step)

    seen = {
        "task": ray.get_runtime_context().get_task_id(),
        "pid": os.getpid(),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    (Path(config["out"]) / f"{trial.number}.json").write_text(json.dumps(seen))
    return float(config.get("i", 0))


# quadratic's steps taking no time: every report of a trial is sent before the agent decides on the first.
INSTANT_HYPERBAND = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {"x": {"values": [1.0, 1.1, 4.0, 5.0, 6.0, 7.0]}, "steps": {"value": 9}},
    "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 2},  # bands at 3 and 6 reports
    "sweeper": {"max_concurrent": 1},
}


def assert_stopped_at_the_first_band(trials: list[optuna.trial.FrozenTrial]) -> None:
    """x = 1.0 and 1.1 pass the band of 3 reports (the best half); each later one is stopped there,
    its fourth report raising TrialPruned (W&B's rule: stopped once it goes on after the decision)."""
    states = {t.params["x"]: t for t in trials}
    assert [x for x, t in states.items() if t.state.name == "COMPLETE"] == [1.0, 1.1]
    for x in (4.0, 5.0, 6.0, 7.0):
        assert states[x].state.name == "PRUNED", x
        assert sorted(states[x].intermediate_values) == [1, 2, 3, 4], x
