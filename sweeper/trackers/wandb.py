"""Weights & Biases: one W&B run per trial, grouped by sweep, with config, history and summary.

Offline unless the user says otherwise (the ``mode`` option or ``WANDB_MODE``), so nothing needs a
W&B server: runs land in ``<dir>/wandb/offline-run-*`` (``dir`` defaults to the sweep directory),
ready for ``wandb sync``. wandb is imported only when the tracker is used.

The run opens when the trial first reports to it, so that a trainer that opens the trial's W&B run
itself (``wandb.init()`` in a W&B-style trainer, see :mod:`sweeper.worker.wandb_bridge`) can have
the tracker stand aside (:meth:`WandbTracker.stand_aside`): one W&B run per trial, never two.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sweeper.trackers.base import RunInfo, State, Tracker, safe_filename

MODES = ("online", "offline", "disabled")
STATE_KEY = "sweeper/state"


class WandbTracker(Tracker):
    """Reports each trial as a W&B run named ``<sweep name>-<trial number>`` in the sweep's group.

    Options:
        project: The W&B project (default: ``WANDB_PROJECT``, else ``sweeper``).
        entity: The W&B entity (default: W&B's own default).
        mode: ``offline`` (default unless ``WANDB_MODE`` says otherwise), ``online`` or ``disabled``.
        dir: Where run directories go (default: the sweep directory).
    """

    name: ClassVar[str] = "wandb"
    requires: ClassVar[str | None] = "wandb"
    extra: ClassVar[str | None] = "wandb"
    options: ClassVar[frozenset[str]] = frozenset({"project", "entity", "mode", "dir"})

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._run: Any = None
        self._pending: tuple[RunInfo, Mapping[str, Any]] | None = None

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        super().check_options(options)
        mode = options.get("mode")
        if mode is not None and mode not in MODES:
            from sweeper.errors import TrackerError

            raise TrackerError(f"tracker 'wandb': mode must be one of {', '.join(MODES)}, got {mode!r}")

    @classmethod
    def prepare(
        cls, options: Mapping[str, Any], sweep_id: str, sweep_name: str, sweep_dir: str
    ) -> dict[str, Any]:
        directory = Path(str(options.get("dir") or sweep_dir)).expanduser().resolve()
        return {
            **options,
            "project": options.get("project") or os.environ.get("WANDB_PROJECT") or "sweeper",
            "mode": options.get("mode") or os.environ.get("WANDB_MODE") or "offline",
            "dir": str(directory),
        }

    def start(self, run: RunInfo, environment: Mapping[str, Any]) -> None:
        import wandb  # noqa: F401 - a missing wandb fails the start, as for every tracker

        self._pending = (run, environment)

    def stand_aside(self) -> dict[str, Any] | None:
        if self._pending is None:
            return None
        run, _ = self._pending
        self._pending = None
        return self.prepare(self.config, run.sweep_id, run.sweep_name, run.sweep_dir)

    def _open(self) -> Any:
        """The trial's run, opened on first use."""
        if self._run is None and self._pending is not None:
            run, environment = self._pending
            self._pending = None
            self._start(run, environment)
        return self._run

    def _start(self, run: RunInfo, environment: Mapping[str, Any]) -> None:
        import wandb

        options = self.prepare(self.config, run.sweep_id, run.sweep_name, run.sweep_dir)
        Path(options["dir"]).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=options["project"],
            entity=options.get("entity"),
            mode=options["mode"],
            dir=options["dir"],
            name=run.run_name,
            group=run.sweep_name,
            job_type="trial",
            tags=[f"sweep:{run.sweep_id}", *run.tags],
            config=dict(run.config),
            # Several trials may share a Ray worker process, one after the other or at once.
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self._run.summary.update(
            {"sweeper/sweep_id": run.sweep_id, "sweeper/trial_number": run.trial_number, STATE_KEY: "running"}
        )
        # The environment goes with the run's files (its config stays the trainer's config).
        environment_file = Path(self._run.dir) / "sweeper-environment.json"
        environment_file.write_text(json.dumps(dict(environment), indent=2, default=str), encoding="utf-8")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._open().log(dict(metrics), step=step)

    def log_artifact(self, path: str) -> None:
        import wandb

        source = Path(path)
        self._open()
        artifact = wandb.Artifact(
            f"{safe_filename(self._run.name)}-{safe_filename(source.name)}", "trial-file"
        )
        if source.is_dir():
            artifact.add_dir(str(source))
        else:
            artifact.add_file(str(source))
        self._run.log_artifact(artifact)

    def log_figure(self, name: str, figure: Any, step: int) -> None:
        import wandb

        self._open().log({name: wandb.Image(figure)}, step=step)

    def log_histogram(self, name: str, values: Sequence[float], step: int) -> None:
        import numpy as np
        import wandb

        array = np.asarray(values, dtype=float).ravel()
        self._open().log({name: wandb.Histogram(array[np.isfinite(array)])}, step=step)

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        import wandb

        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(map(str, row)))
        data = [[row.get(column) for column in columns] for row in rows]
        self._open().log({name: wandb.Table(columns=list(columns), data=data)})

    def finish(self, state: State, summary: Mapping[str, Any]) -> None:
        if self._open() is None:
            return
        try:
            self._run.summary.update({**summary, STATE_KEY: state})
            self._run.tags = (*self._run.tags, state)
        finally:
            self._run.finish(exit_code=1 if state == "failed" else 0)

    def ref(self) -> str | None:
        if self._run is None:
            return None
        if self._run.offline or self._run.disabled:
            return str(Path(self._run.dir).parent)
        return str(self._run.url or self._run.path)
