"""Program trainers: W&B command macros, the parameter file, the report channel, stopping programs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import sweeper
from sweeper.errors import TrainerError, TrialPruned
from sweeper.worker import program as program_module
from sweeper.worker import program_child
from sweeper.worker.program import ProgramFailed, TrialTimeout, run_program, trial_files_dir
from sweeper.worker.program_args import build_argv, write_param_file
from sweeper.worker.program_child import read_param_file

WORKED = {"a": True, "b": False, "c": 1, "lr": 1e-05}


@dataclass
class StandInTrial:
    """The Trial surface from contracts.md; prunes once ``prune_when`` says so."""

    config: dict[str, Any]
    checkpoint_dir: Path
    number: int = 7
    sweep_id: str = "abcdefgh"
    sweep_name: str = "demo"
    attempt: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    logged: list[tuple[dict[str, Any], int | None]] = field(default_factory=list)
    prune_after: int | None = None
    artifacts: list[str] = field(default_factory=list)

    def log_artifact(self, path: str) -> None:
        self.artifacts.append(path)

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        self.logged.append((dict(metrics), step))
        if self.prune_after is not None and len(self.logged) >= self.prune_after:
            raise TrialPruned(f"pruned after {len(self.logged)} reports")


@pytest.fixture
def make_trial(tmp_path):
    def make(config: dict[str, Any] | None = None, **kwargs: Any) -> StandInTrial:
        return StandInTrial(
            config=dict(WORKED if config is None else config), checkpoint_dir=tmp_path / "ckpt", **kwargs
        )

    return make


@pytest.fixture
def script(tmp_path):
    """Write a program into tmp_path and return its name (run with cwd=tmp_path)."""

    def write(source: str, name: str = "train.py") -> str:
        (tmp_path / name).write_text(textwrap.dedent(source))
        return name

    return write


@pytest.fixture(autouse=True)
def short_grace(monkeypatch):
    monkeypatch.setattr(program_module, "KILL_GRACE_S", 1.0)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_dead(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


# -- argv ---------------------------------------------------------------------------------------

ECHO_ARGV = "import json, sys; json.dump(sys.argv[1:], open('argv.json', 'w'))"


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("${args}", ["--a=True", "--b=False", "--c=1", "--lr=1e-05"]),
        ("${args_no_equals}", ["--a", "True", "--b", "False", "--c", "1", "--lr", "1e-05"]),
        ("${args_no_hyphens}", ["a=True", "b=False", "c=1", "lr=1e-05"]),
        ("${args_no_boolean_flags}", ["--a", "--c=1", "--lr=1e-05"]),
        ("${args_json}", ['{"a": true, "b": false, "c": 1, "lr": 1e-05}']),
        ("${args_append_hydra}", ["+a=True", "+b=False", "+c=1", "+lr=1e-05"]),
        ("${args_override_hydra}", ["++a=True", "++b=False", "++c=1", "++lr=1e-05"]),
        ("${env}", ["/usr/bin/env"]),
        ("${interpreter}", [sys.executable]),
        ("${program}", ["train.py"]),
        ("${args_json_file}", ["/w/params.json"]),
        ("${no_such_macro}", []),
        ("--x=${args}", ["--x=${args}"]),  # only a whole token is a macro
        ("${args", ["${args"]),
    ],
)
def test_each_macro_expands_like_wandb(macro, expected):
    argv = build_argv(["head", macro, "tail"], WORKED, program="train.py", args_json_file="/w/params.json")
    assert argv == ["head", *expected, "tail"]


def test_arguments_are_sorted_and_nested_params_render_as_dicts():
    config = {"opt": {"name": "adam", "lr": 0.1}, "batch": 32}
    assert build_argv(["${args}"], config, program=None, args_json_file="") == [
        "--batch=32",
        "--opt={'name': 'adam', 'lr': 0.1}",
    ]
    assert json.loads(build_argv(["${args_json}"], config, program=None, args_json_file="")[0]) == config


def test_envvar_macro_is_replaced_inside_any_token():
    environ = {"DATA": "/data", "N": "3"}
    argv = build_argv(
        [
            "--in=${envvar:DATA}/x",
            "${envvar:N}${envvar:N}",
            "${envvar:UNSET}",
            "x${envvar:lower}",
            "${envvar:lower}",
        ],
        {},
        program=None,
        args_json_file="",
        environ=environ,
    )
    # W&B leaves the variable's name when it is unset, and only knows upper-case names.
    assert argv == ["--in=/data/x", "33", "UNSET", "x${envvar:lower}"]  # a whole unknown macro: nothing


def test_default_command_runs_the_program_with_wandb_args(tmp_path, make_trial, script):
    name = script(ECHO_ARGV)
    run_program(name, None, make_trial(), timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    assert json.loads((tmp_path / "argv.json").read_text()) == [
        "--a=True",
        "--b=False",
        "--c=1",
        "--lr=1e-05",
    ]


def test_shell_metacharacters_pass_literally(tmp_path, make_trial, script):
    name = script(ECHO_ARGV)
    nasty = "$(touch pwned); `id` | cat > x && echo 'q\" *"
    command = ["${env}", "${interpreter}", "${program}", nasty, "${args_no_hyphens}"]
    run_program(
        name, command, make_trial({"s": nasty}), timeout=60, workdir=tmp_path, files_dir=tmp_path / "w"
    )
    assert json.loads((tmp_path / "argv.json").read_text()) == [nasty, f"s={nasty}"]
    assert not (tmp_path / "pwned").exists()


def test_args_json_file_holds_the_params(tmp_path, make_trial, script):
    name = script("import json, sys; json.dump(json.load(open(sys.argv[1])), open('seen.json', 'w'))")
    command = ["${interpreter}", "${program}", "${args_json_file}"]
    run_program(name, command, make_trial(), timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    assert json.loads((tmp_path / "seen.json").read_text()) == WORKED


def test_missing_program_is_a_trainer_error(tmp_path, make_trial):
    with pytest.raises(TrainerError, match=r"program 'nope\.py' not found"):
        run_program("nope.py", None, make_trial(), timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    with pytest.raises(TrainerError, match="has no program"):
        run_program(None, None, make_trial(), timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")


# -- the parameter file and wandb ---------------------------------------------------------------


def test_param_file_is_wandb_format_and_round_trips(tmp_path):
    config = {"lr": 1e-05, "name": "1e-5", "on": "yes", "opt": {"beta": [0.9, 0.99]}, "none": None}
    path = tmp_path / "p.yaml"
    write_param_file(path, config)
    text = path.read_text()
    assert text.startswith("wandb_version: 1\n\n")
    assert "lr:\n  value: 1.0e-05" in text
    assert read_param_file(path) == config


def test_unmodified_wandb_script_sees_its_config(tmp_path, make_trial, script, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    name = script(
        """
        import json, wandb
        run = wandb.init(project="demo")
        json.dump({"config": dict(wandb.config), "id": run.id}, open("seen.json", "w"))
        run.finish()
        """
    )
    trial = make_trial({"lr": 0.01, "layers": 3, "opt": {"name": "adam"}, "flag": True})
    run_program(name, None, trial, timeout=120, workdir=tmp_path, files_dir=tmp_path / "w")
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["config"] == trial.config
    assert seen["id"] == "abcdefgh-7"


# -- reporting through sweeper.init() -----------------------------------------------------------

REPORTER = """
import sweeper
trial = sweeper.init()
assert not trial.standalone
for step in range(1, 6):
    trial.log({"loss": trial.config["lr"] / step, "epoch": step}, step=step * 10)
open("done", "w").write(f"{trial.number} {trial.sweep_id} {trial.checkpoint_dir}")
trial.log_artifact("done")
"""


def test_program_reports_reach_trial_log(tmp_path, make_trial, script):
    name = script(REPORTER)
    trial = make_trial({"lr": 1.0})
    run_program(name, None, trial, timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    assert trial.logged == [({"loss": 1.0 / s, "epoch": s}, s * 10) for s in range(1, 6)]
    assert (tmp_path / "done").read_text() == f"7 abcdefgh {tmp_path / 'ckpt'}"
    assert trial.artifacts == [str(tmp_path / "done")]


def test_program_reports_reach_the_real_trial(tmp_path, script):
    from sweeper.worker.task import Objective, TrialTask
    from sweeper.worker.trial import Trial

    task = TrialTask(
        "abcdefgh",
        "demo",
        0,
        3,
        {"lr": 1.0},
        {"lr": 1.0},
        (Objective("loss"),),
        str(tmp_path / "ck"),
        str(tmp_path),
    )
    trial = Trial(task)
    run_program(script(REPORTER), None, trial, timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    assert trial.values()[0] == pytest.approx(0.2)


def test_standalone_init_reads_the_param_file(tmp_path, monkeypatch, capsys):
    write_param_file(tmp_path / "p.yaml", {"lr": 0.5})
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(tmp_path / "p.yaml"))
    for name in (
        program_child.ENV_CHANNEL,
        program_child.ENV_TRIAL_FILE,
        program_child.ENV_CHECKPOINT_DIR,
    ):
        monkeypatch.delenv(name, raising=False)
    trial = program_child._trial_from_environment(os.environ)
    assert trial.standalone and trial.config == {"lr": 0.5} and trial.number is None
    assert trial.checkpoint_dir.is_dir()
    trial.log({"loss": 0.1}, step=2)
    assert json.loads(capsys.readouterr().out.removeprefix("[sweeper] ")) == {
        "metrics": {"loss": 0.1},
        "step": 2,
    }


def test_a_program_started_from_a_thread_that_blocks_sigterm_still_gets_its_sigterm(
    tmp_path, make_trial, script, monkeypatch
):
    """A blocked signal stays blocked across exec: the program starts with none blocked."""
    monkeypatch.setattr(program_module, "KILL_GRACE_S", 10.0)
    name = script(CATCHES_SIGTERM)
    trial = make_trial(prune_after=3)
    ended: list[BaseException] = []

    def agent_thread() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            run_program(name, None, trial, timeout=120, workdir=tmp_path, files_dir=tmp_path / "w")
        except BaseException as exc:
            ended.append(exc)

    runner = threading.Thread(target=agent_thread)
    runner.start()
    runner.join(60)
    assert [type(exc) for exc in ended] == [TrialPruned]
    assert (tmp_path / "got-sigterm").exists()  # its handler ran, within the grace


def test_sweeper_init_is_exported():
    assert sweeper.init is program_child.init
    assert "init" in sweeper.__all__


# -- stopping -----------------------------------------------------------------------------------


CATCHES_SIGTERM = """
import os, signal, subprocess, sys, time, sweeper
def on_term(*_):
    open("got-sigterm", "w").close()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
child = subprocess.Popen(["sleep", "600"])
open("pids", "w").write(f"{os.getpid()} {child.pid}")
trial = sweeper.init()
step = 0
while True:
    step += 1
    try:
        trial.log({"loss": 1.0})
    except sweeper.TrialPruned:
        open("saw-pruned", "w").close()
        # Short sleeps: CPython runs a Python handler between bytecodes, and a SIGTERM that lands
        # after its last check but before a long sleep's system call waits for the sleep to end.
        while True:
            time.sleep(0.05)
"""


def _note_signal_state(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the kernel says of the program 2 s after its SIGTERM, while it is still alive (for a
    failure's message: which signals it blocks, has pending, catches; its threads)."""
    notes: list[str] = []
    send = program_module._signal_group

    def spy(pgid: int, sig: signal.Signals) -> None:
        send(pgid, sig)

        def look() -> None:
            time.sleep(2.0)
            with contextlib.suppress(OSError):
                status = Path(f"/proc/{pgid}/status").read_text().splitlines()
                keys = ("State", "Threads", "SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")
                notes.append(" ".join(line for line in status if line.split(":")[0] in keys))

        if sig == signal.SIGTERM:
            threading.Thread(target=look, daemon=True).start()

    monkeypatch.setattr(program_module, "_signal_group", spy)
    return notes


def test_pruned_program_gets_sigterm_and_the_whole_tree_dies(tmp_path, make_trial, script, monkeypatch):
    # The product's grace, not the suite's 1 s: in 2 of 4 full runs on a loaded machine the handler
    # had not run within 1 s, and once (2026-12-03) not within 10 s, the program asleep in one
    # time.sleep(600) with SIGTERM caught, not pending: the program now sleeps in short steps.
    monkeypatch.setattr(program_module, "KILL_GRACE_S", 10.0)
    notes = _note_signal_state(monkeypatch)
    name = script(CATCHES_SIGTERM)
    trial = make_trial(prune_after=3)
    with pytest.raises(TrialPruned):
        run_program(name, None, trial, timeout=120, workdir=tmp_path, files_dir=tmp_path / "w")
    assert len(trial.logged) == 3
    # Whether the program saw TrialPruned before SIGTERM arrived is a race; SIGTERM it always gets.
    assert (tmp_path / "got-sigterm").exists(), (
        f"saw-pruned: {(tmp_path / 'saw-pruned').exists()}; after SIGTERM: {notes}; "
        f"stderr: {(tmp_path / 'w' / 'stderr.log').read_text()[-1500:]}"
    )
    program_pid, sleeper_pid = map(int, (tmp_path / "pids").read_text().split())
    assert not alive(program_pid)
    assert wait_dead(sleeper_pid)


def test_pruned_program_ignoring_sigterm_is_killed(tmp_path, make_trial, script):
    name = script(
        """
        import os, signal, time, sweeper
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open("pid", "w").write(str(os.getpid()))
        trial = sweeper.init()
        try:
            trial.log({"loss": 1.0})
        except sweeper.TrialPruned:
            time.sleep(600)
        """
    )
    with pytest.raises(TrialPruned):
        run_program(
            name, None, make_trial(prune_after=1), timeout=120, workdir=tmp_path, files_dir=tmp_path / "w"
        )
    assert not alive(int((tmp_path / "pid").read_text()))


def test_non_zero_exit_says_code_and_stderr(tmp_path, make_trial, script):
    name = script(
        """
        import sys
        for i in range(100):
            print(f"noise {i}", file=sys.stderr)
        print("ValueError: lr must be positive", file=sys.stderr)
        sys.exit(3)
        """
    )
    with pytest.raises(
        ProgramFailed, match=r"exited with code 3[\s\S]*ValueError: lr must be positive"
    ) as info:
        run_program(name, None, make_trial(), timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    assert info.value.returncode == 3
    assert "noise 0\n" not in info.value.stderr_tail  # only the tail
    assert "noise 0\n" in (tmp_path / "w" / "stderr.log").read_text()


def test_death_by_signal_is_named(tmp_path, make_trial, script):
    name = script("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    with pytest.raises(ProgramFailed, match="killed by signal SIGSEGV"):
        run_program(name, None, make_trial(), timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")


def test_timeout_stops_the_program(tmp_path, make_trial, script):
    name = script(
        """
        import os, time
        open("pid", "w").write(str(os.getpid()))
        time.sleep(600)
        """
    )
    with pytest.raises(TrialTimeout, match=r"timeout of 1\.5 s"):
        run_program(name, None, make_trial(), timeout=1.5, workdir=tmp_path, files_dir=tmp_path / "w")
    assert not alive(int((tmp_path / "pid").read_text()))


def test_megabytes_of_output_do_not_deadlock(tmp_path, make_trial, script):
    name = script(
        """
        import sys, sweeper
        trial = sweeper.init()
        line = "x" * 1023 + "\\n"
        for i in range(8):
            sys.stdout.write(line * 1024)
            sys.stderr.write(line * 1024)
            trial.log({"loss": float(i)})
        """
    )
    trial = make_trial()
    run_program(name, None, trial, timeout=120, workdir=tmp_path, files_dir=tmp_path / "w")
    assert len(trial.logged) == 8
    assert (tmp_path / "w" / "stdout.log").stat().st_size == 8 * 1024 * 1024
    assert (tmp_path / "w" / "stderr.log").stat().st_size == 8 * 1024 * 1024


def test_program_dies_with_its_parent(tmp_path, script):
    """A parent killed with SIGKILL takes its program along (PR_SET_PDEATHSIG)."""
    script(
        """
        import os, time
        open("pid", "w").write(str(os.getpid()))
        time.sleep(600)
        """
    )
    parent = textwrap.dedent(
        f"""
        from pathlib import Path
        from sweeper.worker.program import run_program
        class T:
            number = 0; sweep_id = "abcdefgh"; sweep_name = "d"; attempt = 0
            config = {{}}; params = {{}}; checkpoint_dir = Path({str(tmp_path / "ck")!r})
            def log(self, metrics, step=None): pass
        run_program("train.py", None, T(), timeout=None, workdir=Path("."))
        """
    )
    import subprocess

    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=tmp_path)
    try:
        end = time.monotonic() + 60
        pid_file = tmp_path / "pid"
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < end:
            time.sleep(0.05)
        pid = int((tmp_path / "pid").read_text())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert wait_dead(pid)
    finally:
        proc.kill()
        proc.wait()


def test_grandchild_without_the_pipes_is_standalone(tmp_path, make_trial, script):
    script(
        """
        import os, sweeper
        spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(8)]  # reuse the channel's fd numbers
        open("grandchild", "w").write(str(sweeper.init().standalone))
        """,
        name="grandchild.py",
    )
    name = script(
        """
        import subprocess, sys, sweeper
        subprocess.run([sys.executable, "grandchild.py"], check=True)
        sweeper.init().log({"loss": 1.0})
        """
    )
    trial = make_trial()
    run_program(name, None, trial, timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    assert (tmp_path / "grandchild").read_text() == "True"
    assert trial.logged == [({"loss": 1.0}, None)]


def test_a_process_left_holding_the_output_pipes_is_not_waited_for(tmp_path, make_trial, script):
    """A child that leaves the program's group (setsid) and keeps its stdout and stderr: the trial
    ends with the program, not with the child (whoever runs the trial ends such leftovers)."""
    name = script(
        """
        import subprocess, sweeper
        child = subprocess.Popen(["setsid", "sleep", "15"])  # inherits stdout and stderr
        open("child", "w").write(str(child.pid))
        sweeper.init().log({"loss": 1.0})
        print("done")
        """
    )
    trial = make_trial()
    run_program(name, None, trial, timeout=60, workdir=tmp_path, files_dir=tmp_path / "w")
    child = int((tmp_path / "child").read_text())
    try:
        assert alive(child)  # it was not waited for
        assert trial.logged == [({"loss": 1.0}, None)]
        assert (tmp_path / "w" / "stdout.log").read_text() == "done\n"
    finally:
        os.kill(child, signal.SIGKILL)


def test_each_attempt_keeps_its_files_under_the_sweep_dir(tmp_path, make_trial, script):
    name = script("import os; print(os.environ['WANDB_SWEEP_PARAM_PATH'], os.environ['WANDB_RUN_ID'])")
    first, retry = make_trial(), make_trial(attempt=1)
    for trial in (first, retry):
        run_program(name, None, trial, timeout=60, workdir=tmp_path)
    for trial, run_id in ((first, "abcdefgh-7"), (retry, "abcdefgh-7-1")):
        files = trial_files_dir(tmp_path, trial)
        assert files == tmp_path / ".sweeper" / "sweeps" / "abcdefgh" / "programs" / f"7-{trial.attempt}"
        assert (files / "stdout.log").read_text() == f"{files / 'params.yaml'} {run_id}\n"
        assert read_param_file(files / "params.yaml") == WORKED
