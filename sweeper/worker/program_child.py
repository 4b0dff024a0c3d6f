"""The program's side of a program trainer: ``trial = sweeper.init()`` in the training script.

The trial is bound to the agent over a private pair of inherited pipes (JSON lines; nothing listens
on a port). Run by hand, the program gets a standalone trial: its config comes from
``WANDB_SWEEP_PARAM_PATH`` when set (else empty) and ``log`` prints to stdout. This module imports
nothing heavy: it runs inside the user's script.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import TrialPruned

# Environment of a program run by an agent (besides W&B's WANDB_SWEEP_PARAM_PATH, _SWEEP_ID, _RUN_ID).
ENV_CHANNEL = "SWEEPER_CHANNEL"  # "<fd>:<inode>,<fd>:<inode>": the pipes from and to the parent


ENV_TRIAL_FILE = "SWEEPER_TRIAL_FILE"  # JSON: number, sweep_id, sweep_name, attempt, config, params, ...


ENV_SWEEP_ID = "SWEEPER_SWEEP_ID"


ENV_SWEEP_NAME = "SWEEPER_SWEEP_NAME"


ENV_TRIAL_NUMBER = "SWEEPER_TRIAL_NUMBER"


ENV_ATTEMPT = "SWEEPER_ATTEMPT"


ENV_CHECKPOINT_DIR = "SWEEPER_CHECKPOINT_DIR"


def read_param_file(path: Path) -> dict[str, Any]:
    """The config held in a W&B sweep parameter file."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {
        name: entry["value"]
        for name, entry in data.items()
        if name not in ("wandb_version", "_wandb") and isinstance(entry, dict) and "value" in entry
    }


class ProgramTrial:
    """The trial as a program sees it, from ``sweeper.init()``.

    Attributes:
        config: The nested config of the trial (empty when run by hand without a parameter file).
        params: The flat Optuna parameters (empty when run by hand).
        number: The trial number, or None when run by hand.
        sweep_id: The sweep id, or None when run by hand.
        sweep_name: The sweep name, or None when run by hand.
        attempt: 0 for the first attempt of the trial.
        checkpoint_dir: A directory that survives retries of the same trial.
    """

    def __init__(
        self,
        *,
        config: dict[str, Any],
        params: dict[str, Any],
        number: int | None,
        sweep_id: str | None,
        sweep_name: str | None,
        attempt: int,
        checkpoint_dir: Path,
        channel: tuple[int, int] | None,
    ) -> None:
        self.config = config
        self.params = params
        self.number = number
        self.sweep_id = sweep_id
        self.sweep_name = sweep_name
        self.attempt = attempt
        self.checkpoint_dir = checkpoint_dir
        self._lock = threading.Lock()
        self._verdicts: io.BufferedReader | None = None
        self._reports: int | None = None
        if channel is not None:
            self._verdicts = io.BufferedReader(io.FileIO(channel[0], "rb", closefd=False))
            self._reports = channel[1]

    @property
    def standalone(self) -> bool:
        """True when no agent runs this program (run by hand): ``log`` prints instead."""
        return self._reports is None

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Report metrics to the agent (or print them when standalone).

        Raises:
            TrialPruned: the pruner stopped this trial; let it propagate and exit.
        """
        verdict = self._send({"metrics": dict(metrics), "step": None if step is None else int(step)})
        if verdict.get("pruned"):
            raise TrialPruned(f"trial {self.number} was pruned at step {step}")

    def log_artifact(self, path: str | os.PathLike[str]) -> None:
        """Attach a file or directory to the trial's tracker runs (by absolute path)."""
        self._send({"artifact": str(Path(path).resolve())})

    @property
    def reporting_itself(self) -> bool:
        """True once the program called ``sweeper.init()``: its own ``trial.log`` calls report, so
        what it logs through W&B is not reported a second time."""
        return _called_init

    def send(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one message to the agent and return its answer (the W&B bridge's messages)."""
        return self._send(payload)

    def _send(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Send one message and wait for the agent's verdict ({} when standalone)."""
        line = json.dumps(payload, default=float)
        if self._reports is None or self._verdicts is None:
            print(f"[sweeper] {line}", flush=True)
            return {}
        with self._lock:
            data = (line + "\n").encode()
            while data:
                data = data[os.write(self._reports, data) :]
            answer = self._verdicts.readline()
        if not answer:
            raise RuntimeError("sweeper agent went away while the program was reporting")
        verdict: dict[str, Any] = json.loads(answer)
        if "error" in verdict:
            raise RuntimeError(f"sweeper agent failed to record a report: {verdict['error']}")
        return verdict


_current: ProgramTrial | None = None
_called_init = False


def init() -> ProgramTrial:
    """The trial this program runs for (call once, at start; later calls return the same object).

    Example:
        >>> trial = init()  # run by hand: standalone
        >>> trial.standalone
        True
    """
    global _current, _called_init
    _called_init = True
    if _current is None:
        _current = _trial_from_environment(os.environ)
    return _current


def agent_trial() -> ProgramTrial | None:
    """The trial this program runs for, if an agent runs it (it holds the agent's channel), else None.

    The W&B bridge reports through it; it is the object ``init()`` returns, so the two never
    interleave their messages.
    """
    global _current
    if _channel(os.environ.get(ENV_CHANNEL)) is None:
        return None
    if _current is None:
        _current = _trial_from_environment(os.environ)
    return _current


def _trial_from_environment(env: Mapping[str, str]) -> ProgramTrial:
    record: dict[str, Any] = {}
    if trial_file := env.get(ENV_TRIAL_FILE):
        record = json.loads(Path(trial_file).read_text(encoding="utf-8"))
    config = record.get("config")
    if config is None:
        param_path = env.get("WANDB_SWEEP_PARAM_PATH")
        config = read_param_file(Path(param_path)) if param_path else {}
    where = record.get("checkpoint_dir") or env.get(ENV_CHECKPOINT_DIR)
    # Run by hand: a fresh directory rather than litter in the working directory.
    checkpoint_dir = Path(where) if where else Path(tempfile.mkdtemp(prefix="sweeper-checkpoints-"))
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return ProgramTrial(
        config=config,
        params=record.get("params", {}),
        number=record.get("number"),
        sweep_id=record.get("sweep_id"),
        sweep_name=record.get("sweep_name"),
        attempt=int(record.get("attempt", 0)),
        checkpoint_dir=checkpoint_dir,
        channel=_channel(env.get(ENV_CHANNEL)),
    )


def _channel(value: str | None) -> tuple[int, int] | None:
    """The inherited pipe fds, if this process really holds them.

    A grandchild inherits the environment but usually not the fds, and may have reused their
    numbers for other files: the pipes' inode numbers tell them apart.
    """
    if not value:
        return None
    fds: list[int] = []
    try:
        for part in value.split(","):
            fd, inode = (int(item) for item in part.split(":"))
            if os.fstat(fd).st_ino != inode:
                return None
            fds.append(fd)
    except (ValueError, OSError):
        return None
    if len(fds) != 2:
        return None
    return fds[0], fds[1]
