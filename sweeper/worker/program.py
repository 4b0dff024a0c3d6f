"""Program trainers: run a W&B-style training script as a child process, one per trial.

Parent side, :func:`run_program`: builds the argv from W&B's command macros (never through a shell),
writes W&B's sweep parameter file so an unmodified ``wandb.init()`` sees the swept config, starts
the program in its own process group, forwards what it reports to ``trial.log`` and stops it when
the pruner says so (SIGTERM, then SIGKILL after :data:`KILL_GRACE_S`).

The child's side, ``sweeper.init()``, is :mod:`sweeper.worker.program_child`; the two share the
environment variable names defined there.

``${interpreter}`` expands to :data:`sys.executable`, not W&B's bare ``python``, so the program
runs in the same virtual environment as the agent whatever ``PATH`` says.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from sweeper.errors import TrainerError, TrialPruned
from sweeper.worker.program_args import DEFAULT_COMMAND, build_argv, write_param_file
from sweeper.worker.program_child import (
    ENV_ATTEMPT,
    ENV_CHANNEL,
    ENV_CHECKPOINT_DIR,
    ENV_SWEEP_ID,
    ENV_SWEEP_NAME,
    ENV_TRIAL_FILE,
    ENV_TRIAL_NUMBER,
)
from sweeper.worker.wandb_bridge import EXTRA as WANDB_EXTRA
from sweeper.worker.wandb_bridge import run_defaults

# Seconds a pruned or timed-out program has between SIGTERM and SIGKILL (W&B's agent waits 30).
KILL_GRACE_S = 10.0
# Once the program is gone, its output pipes are read until they stay quiet this long.
_DRAIN_QUIET_S = 0.2
# How much of the program's stderr is kept in memory for the failure message.
STDERR_TAIL_BYTES = 64 * 1024
STDERR_TAIL_LINES = 20

# Put first on a program's PYTHONPATH: its sitecustomize installs the W&B bridge when wandb is imported.
PROGRAM_SITE = Path(__file__).resolve().parent / "program_site"


_PR_SET_PDEATHSIG = 1


class ProgramFailed(RuntimeError):  # noqa: N818 - the name the contract fixes
    """The program exited with a non-zero code or was killed by a signal.

    Attributes:
        returncode: The exit code; negative for a signal (``-signal.SIGSEGV``).
        stderr_tail: The last lines the program wrote to stderr.
        log_dir: Where its full stdout/stderr logs are.
    """

    def __init__(self, returncode: int, stderr_tail: str, log_dir: Path) -> None:
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.log_dir = log_dir
        if returncode < 0:
            try:
                how = f"was killed by signal {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"was killed by signal {-returncode}"
        else:
            how = f"exited with code {returncode}"
        tail = f"; last lines of stderr:\n{stderr_tail}" if stderr_tail.strip() else " (no stderr output)"
        super().__init__(f"program {how} (logs in {log_dir}){tail}")


class TrialTimeout(TimeoutError):  # noqa: N818 - the name the contract fixes
    """The program ran longer than the trial's timeout and was stopped."""


class ReportingTrial(Protocol):
    """What :func:`run_program` needs of the trial (a subset of :class:`sweeper.worker.trial.Trial`).

    ``log_artifact(path)``, when the trial has it, receives the program's artifacts.
    """

    @property
    def number(self) -> int: ...
    @property
    def sweep_id(self) -> str: ...
    @property
    def sweep_name(self) -> str: ...
    @property
    def config(self) -> Mapping[str, Any]: ...
    @property
    def params(self) -> Mapping[str, Any]: ...
    @property
    def attempt(self) -> int: ...
    @property
    def checkpoint_dir(self) -> Path: ...

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...


# -- argv ---------------------------------------------------------------------------------------


def wandb_run_id(trial: ReportingTrial) -> str:
    """The W&B run id a program trial gets: unique per sweep, trial and attempt."""
    suffix = f"-{trial.attempt}" if trial.attempt else ""
    return f"{trial.sweep_id}-{trial.number}{suffix}"


# -- parent side --------------------------------------------------------------------------------


def trial_files_dir(workdir: Path, trial: ReportingTrial) -> Path:
    """Where :func:`run_program` keeps a trial's parameter files and the program's logs.

    ``<workdir>/.sweeper/sweeps/<sweep id>/programs/<trial number>-<attempt>``: next to the sweep's
    other local outputs, one folder per attempt, so concurrent trials never share a file.
    """
    return workdir / ".sweeper" / "sweeps" / trial.sweep_id / "programs" / f"{trial.number}-{trial.attempt}"


def run_program(
    program: str | None,
    command: Sequence[str] | None,
    trial: ReportingTrial,
    *,
    timeout: float | None,
    workdir: Path,
    files_dir: Path | None = None,
) -> None:
    """Run a W&B-style program for one trial, forwarding its reports to ``trial.log``.

    The program runs in ``workdir`` (the agent's directory, as W&B's agent runs it, so a relative
    ``program`` resolves there). The parameter files and the program's ``stdout.log`` /
    ``stderr.log`` go to ``files_dir``, by default :func:`trial_files_dir`.

    Args:
        program: The spec's ``program`` (a script path), or None when ``command`` does not use it.
        command: The spec's ``command``; None means ``${env} ${interpreter} ${program} ${args}``.
        trial: The trial the program runs; receives its ``log`` calls.
        timeout: Seconds the program may run, or None.
        workdir: Working directory of the program.
        files_dir: Directory for this attempt's files (created).

    Raises:
        TrialPruned: the pruner stopped the trial (the program was terminated).
        TrialTimeout: the program ran past ``timeout`` (it was terminated).
        ProgramFailed: the program exited with a non-zero code or died of a signal.
        TrainerError: there is nothing to run (no program for a command that needs one).
    """
    tokens = tuple(command) if command is not None else DEFAULT_COMMAND
    if "${program}" in tokens:
        if not program:
            raise TrainerError("the sweep's command uses ${program} but the spec has no program")
        if not (workdir / program).is_file():
            raise TrainerError(f"program {program!r} not found in {workdir}")
    files = trial_files_dir(workdir, trial) if files_dir is None else files_dir
    files.mkdir(parents=True, exist_ok=True)
    config = dict(trial.config)
    json_file = files / "params.json"
    argv = build_argv(tokens, config, program=program, args_json_file=str(json_file))
    if "${args_json_file}" in tokens:
        json_file.write_text(json.dumps(dict(sorted(config.items()))), encoding="utf-8")
    param_file = files / "params.yaml"
    write_param_file(param_file, config)
    trial_file = files / "trial.json"
    trial_file.write_text(json.dumps(_trial_record(trial)), encoding="utf-8")
    if not argv:
        raise TrainerError(f"the sweep's command {list(tokens)} expands to nothing to run")

    # Two pipes: reports flow child -> parent, verdicts parent -> child.
    report_r, report_w = os.pipe()
    verdict_r, verdict_w = os.pipe()
    env = dict(os.environ)
    # W&B exports its service's address when this process used W&B (a tracker, a W&B-style
    # function trainer); a program on that shared service loses the end of its run when it dies
    # abruptly. Like under W&B's agent, the program starts its own.
    env.pop("WANDB_SERVICE", None)
    env.update(
        {
            "WANDB_SWEEP_PARAM_PATH": str(param_file),
            "WANDB_RUN_ID": wandb_run_id(trial),
            # The W&B bridge's hook (program_site/sitecustomize.py), loaded first by any Python the
            # program starts; it chains to the user's own sitecustomize.
            "PYTHONPATH": os.pathsep.join(
                [str(PROGRAM_SITE), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
            ),
            ENV_CHANNEL: _channel_spec(verdict_r, report_w),
            ENV_TRIAL_FILE: str(trial_file),
            ENV_SWEEP_ID: trial.sweep_id,
            ENV_SWEEP_NAME: trial.sweep_name,
            ENV_TRIAL_NUMBER: str(trial.number),
            ENV_ATTEMPT: str(trial.attempt),
            ENV_CHECKPOINT_DIR: str(trial.checkpoint_dir),
        }
    )
    stdout_log = (files / "stdout.log").open("wb")
    stderr_log = (files / "stderr.log").open("wb")
    try:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(verdict_r, report_w),
                start_new_session=True,  # own process group: a kill reaches the whole tree
                preexec_fn=_in_child(os.getpid()),  # noqa: PLW1509 - two system calls
            )
        except OSError as exc:
            raise TrainerError(f"cannot start {argv[0]!r}: {exc}") from exc
        finally:
            os.close(verdict_r)
            os.close(report_w)
        assert proc.stdout is not None and proc.stderr is not None
        stderr_tail: deque[bytes] = deque()
        pumps = [
            _Pump(proc.stdout, stdout_log, None),
            _Pump(proc.stderr, stderr_log, stderr_tail),
        ]
        sweep_dir = workdir / ".sweeper" / "sweeps" / trial.sweep_id
        try:
            _supervise(proc, trial, report_r, verdict_w, timeout, sweep_dir=str(sweep_dir))
        except BaseException:
            _stop(proc)
            raise
        finally:
            _kill_group(proc.pid)  # leftovers of a finished program would hold GPUs and pipes
            for pump in pumps:
                pump.join()
        if proc.returncode != 0:
            tail = b"".join(stderr_tail).decode("utf-8", "replace").splitlines()[-STDERR_TAIL_LINES:]
            raise ProgramFailed(proc.returncode, _hint("\n".join(tail)), files)
    finally:
        os.close(report_r)
        os.close(verdict_w)
        stdout_log.close()
        stderr_log.close()


def _trial_record(trial: ReportingTrial) -> dict[str, Any]:
    return {
        "number": trial.number,
        "sweep_id": trial.sweep_id,
        "sweep_name": trial.sweep_name,
        "attempt": trial.attempt,
        "config": dict(trial.config),
        "params": dict(trial.params),
        "checkpoint_dir": str(trial.checkpoint_dir),
    }


def _hint(stderr_tail: str) -> str:
    """The tail of stderr, plus what to install when the program could not import wandb."""
    if "No module named 'wandb'" in stderr_tail:
        return f"{stderr_tail}\n(the program uses W&B: pip install '{WANDB_EXTRA}')"
    return stderr_tail


def _supervise(
    proc: subprocess.Popen[bytes],
    trial: ReportingTrial,
    report_fd: int,
    verdict_fd: int,
    timeout: float | None,
    *,
    sweep_dir: str,
) -> None:
    """Serve the program's reports until it exits; raise TrialPruned or TrialTimeout to stop it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    buffer = b""
    open_channel = True
    with selectors.DefaultSelector() as selector:
        selector.register(report_fd, selectors.EVENT_READ)
        while True:
            wait = 0.2
            exited = proc.poll() is not None
            if deadline is not None and not exited:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TrialTimeout(f"program ran longer than the trial timeout of {timeout} s")
                wait = min(wait, left)
            # After exit, read what is left without waiting.
            ready = selector.select(0 if exited else wait) if open_channel else []
            if ready:
                chunk = os.read(report_fd, 65536)
                if not chunk:
                    open_channel = False
                    selector.unregister(report_fd)
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        _serve(line, trial, verdict_fd, sweep_dir)
                continue
            if exited:
                return
            if not open_channel:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(wait)


def _serve(line: bytes, trial: ReportingTrial, verdict_fd: int, sweep_dir: str) -> None:
    """Handle one report: call ``trial.log`` and tell the program whether to go on."""
    message = json.loads(line)
    try:
        if "artifact" in message:
            log_artifact = getattr(trial, "log_artifact", None)
            if log_artifact is not None:
                log_artifact(message["artifact"])
        elif "wandb_init" in message:  # the program's wandb.init(): which run to open
            _reply(verdict_fd, {"ok": True, "wandb": _wandb_defaults(trial, sweep_dir)})
            return
        elif "wandb_run" in message:
            note = getattr(trial, "note_tracker_run", None)
            if note is not None:
                note("wandb", str(message["wandb_run"]))
        elif "summary" in message:  # values the program set in its W&B run's summary
            absorb = getattr(trial, "absorb_result", None)
            if absorb is not None:
                absorb(dict(message["summary"]))
        else:
            trial.log(message["metrics"], step=message.get("step"))
    except TrialPruned:
        _reply(verdict_fd, {"pruned": True})
        raise
    except BaseException as exc:
        _reply(verdict_fd, {"error": f"{type(exc).__name__}: {exc}"})
        raise
    _reply(verdict_fd, {"ok": True})


def _wandb_defaults(trial: ReportingTrial, sweep_dir: str) -> dict[str, Any]:
    """The W&B run a program trial opens; the sweep's ``wandb`` tracker stands aside for it."""
    take_tracker = getattr(trial, "take_tracker", None)
    return run_defaults(
        sweep_id=trial.sweep_id,
        sweep_name=trial.sweep_name,
        number=trial.number,
        attempt=trial.attempt,
        sweep_dir=str(getattr(trial, "sweep_dir", None) or sweep_dir),
        tags=tuple(getattr(trial, "tags", ())),
        config=trial.config,
        tracker_options=take_tracker("wandb") if take_tracker is not None else None,
    ).to_json()


def _reply(verdict_fd: int, verdict: Mapping[str, Any]) -> None:
    # BrokenPipeError: the program is gone; its exit status says why.
    with contextlib.suppress(BrokenPipeError):
        os.write(verdict_fd, json.dumps(verdict).encode() + b"\n")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the program's process group, then SIGKILL it after the grace period."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(KILL_GRACE_S)
    _kill_group(proc.pid)
    proc.wait()


def _kill_group(pgid: int) -> None:
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(pgid, sig)


def _in_child(parent_pid: int) -> Any:
    """A preexec function: the program starts with no signal blocked, and (Linux) the kernel
    SIGKILLs it when its parent dies.

    A blocked signal stays blocked across ``exec``, and a program's own handler cannot undo that:
    started from a thread that blocks SIGTERM, the program would never see the SIGTERM that asks it
    to stop, and would lose its grace period (a checkpoint, a last ``log``) to the SIGKILL after it.
    """
    libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None

    def arm() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if libc is not None:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:  # the parent died before prctl took effect
                os._exit(1)

    return arm


class _Pump:
    """Copy a pipe to a log file on a thread, keeping a bounded tail in memory.

    Once the program is gone (:meth:`join`), the pump reads what is left and stops at the first
    quiet :data:`_DRAIN_QUIET_S`: a process the program left behind (one that called ``setsid``,
    out of the program's group) may hold the pipe open, and its trial must not wait for it.
    """

    def __init__(self, source: IO[bytes], sink: IO[bytes], tail: deque[bytes] | None) -> None:
        self._source = source
        self._sink = sink
        self._tail = tail
        self._draining = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        kept = 0
        fd = self._source.fileno()
        while True:
            draining = self._draining.is_set()
            ready, _, _ = select.select([fd], [], [], _DRAIN_QUIET_S)
            if not ready:
                if draining:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            self._sink.write(chunk)
            if self._tail is not None:
                self._tail.append(chunk)
                kept += len(chunk)
                while kept - len(self._tail[0]) >= STDERR_TAIL_BYTES:
                    kept -= len(self._tail.popleft())
        self._sink.flush()

    def join(self) -> None:
        self._draining.set()
        self._thread.join(timeout=10)
        self._source.close()


# -- child side ---------------------------------------------------------------------------------


def _channel_spec(read_fd: int, write_fd: int) -> str:
    return ",".join(f"{fd}:{os.fstat(fd).st_ino}" for fd in (read_fd, write_fd))
