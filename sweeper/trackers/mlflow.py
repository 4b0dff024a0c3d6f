"""MLflow: one experiment per sweep, a parent run for the sweep, a nested run per trial.

Tracking URI: the ``tracking_uri`` option, else ``MLFLOW_TRACKING_URI``, else a SQLite store in the
sweep directory (``sqlite:///<sweep_dir>/mlflow.db``, artifacts in ``<sweep_dir>/mlartifacts``).
MLflow is imported only when the tracker is used.

Metrics go to MLflow in batches (``log_batch``, up to MLflow's 1,000 metrics a call): a trial that
logs every training batch would otherwise cost one store transaction per log. A batch is sent
once it is full or ``FLUSH_S`` after the previous one, at the next log, and at the trial's end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sweeper.trackers.base import RunInfo, State, Tracker, flatten, numeric_metrics

# MLflow's limits: params per batch, metrics per batch, characters of a param value.
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_PARAM_VALUE_MAX = 6000
FLUSH_S = 1.0

_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}

TAG_SWEEP_ID = "sweeper.sweep_id"
TAG_ROLE = "sweeper.role"
TAG_TRIAL = "sweeper.trial_number"
TAG_STATE = "sweeper.state"


def default_tracking_uri(sweep_dir: str) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else a SQLite store in the sweep directory."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(sweep_dir).resolve() / 'mlflow.db'}"


def mlflow_key(name: str) -> str:
    """``name`` with the characters MLflow rejects in metric and param keys replaced by ``_``."""
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in name)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:_PARAM_VALUE_MAX]


class MlflowTracker(Tracker):
    """Reports each trial as a nested MLflow run under the sweep's parent run.

    Options:
        tracking_uri: Where MLflow stores runs (default: ``MLFLOW_TRACKING_URI`` or a SQLite file
            in the sweep directory).
        experiment: The experiment's name (default: the sweep's name).
    """

    name: ClassVar[str] = "mlflow"
    requires: ClassVar[str | None] = "mlflow"
    extra: ClassVar[str | None] = "mlflow"
    options: ClassVar[frozenset[str]] = frozenset({"tracking_uri", "experiment"})

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._client: Any = None
        self._run_id: str | None = None
        self._logged: set[str] = set()
        self._last_step = 0
        self._pending: list[Any] = []  # metrics (MLflow's Metric) not sent yet, in order
        self._flushed = time.monotonic()

    @classmethod
    def prepare(
        cls, options: Mapping[str, Any], sweep_id: str, sweep_name: str, sweep_dir: str
    ) -> dict[str, Any]:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        uri = str(options.get("tracking_uri") or default_tracking_uri(sweep_dir))
        experiment = str(options.get("experiment") or sweep_name)
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            artifacts = None
            if uri.startswith("sqlite:"):
                # Without this, a SQLite store puts artifacts under ./mlruns of whatever cwd.
                folder = Path(sweep_dir).resolve() / "mlartifacts"
                folder.mkdir(parents=True, exist_ok=True)
                artifacts = folder.as_uri()
            try:
                experiment_id = client.create_experiment(experiment, artifact_location=artifacts)
            except MlflowException:  # another agent created it meanwhile
                found = client.get_experiment_by_name(experiment)
                if found is None:
                    raise
                experiment_id = found.experiment_id
        else:
            experiment_id = found.experiment_id
        parent_filter = f"tags.`{TAG_SWEEP_ID}` = '{sweep_id}' and tags.`{TAG_ROLE}` = 'sweep'"
        parents = client.search_runs([experiment_id], filter_string=parent_filter, max_results=1)
        if parents:
            parent_id = parents[0].info.run_id
            if parents[0].info.status != "RUNNING":  # the sweep resumes after it was closed
                client.update_run(parent_id, status="RUNNING")
        else:
            parent = client.create_run(
                experiment_id,
                run_name=sweep_name,
                tags={TAG_SWEEP_ID: sweep_id, TAG_ROLE: "sweep", "sweeper.sweep_name": sweep_name},
            )
            parent_id = parent.info.run_id
        return {
            **options,
            "tracking_uri": uri,
            "experiment": experiment,
            "_experiment_id": experiment_id,
            "_parent_run_id": parent_id,
        }

    @classmethod
    def close_sweep(cls, options: Mapping[str, Any], state: str) -> None:
        """End the sweep's parent run: ``FINISHED`` when the sweep finished, ``KILLED`` otherwise."""
        parent = options.get("_parent_run_id")
        if not parent:
            return
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=str(options["tracking_uri"]))
        client.set_tag(parent, TAG_STATE, state)
        client.set_terminated(parent, status="FINISHED" if state == "finished" else "KILLED")

    def start(self, run: RunInfo, environment: Mapping[str, Any]) -> None:
        from mlflow import MlflowClient
        from mlflow.entities import Param

        options = self.config
        if "_parent_run_id" not in options:
            options = self.prepare(options, run.sweep_id, run.sweep_name, run.sweep_dir)
        client = MlflowClient(tracking_uri=options["tracking_uri"])
        tags = {
            "mlflow.parentRunId": options["_parent_run_id"],
            TAG_SWEEP_ID: run.sweep_id,
            "sweeper.sweep_name": run.sweep_name,
            TAG_ROLE: "trial",
            TAG_TRIAL: str(run.trial_number),
            "sweeper.attempt": str(run.attempt),
            TAG_STATE: "running",
            "sweeper.host": str(environment.get("hostname", "")),
        }
        if run.tags:
            tags["sweeper.tags"] = ",".join(run.tags)
        # The environment's headline as searchable tags; all of it goes to environment.json.
        if environment.get("python"):
            tags["sweeper.python"] = str(environment["python"])
        if environment.get("gpus"):
            tags["sweeper.gpus"] = ",".join(map(str, environment["gpus"]))
        git = environment.get("git")
        if isinstance(git, Mapping) and git.get("commit"):
            tags["mlflow.source.git.commit"] = str(git["commit"])
        created = client.create_run(options["_experiment_id"], run_name=run.run_name, tags=tags)
        self._client = client
        self._run_id = created.info.run_id
        params = [Param(mlflow_key(key), _param_value(value)) for key, value in flatten(run.config).items()]
        for i in range(0, len(params), _PARAMS_PER_BATCH):
            client.log_batch(self._run_id, params=params[i : i + _PARAMS_PER_BATCH])
        client.log_dict(self._run_id, dict(environment), "environment.json")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        values = {mlflow_key(key): value for key, value in numeric_metrics(metrics).items()}
        self._pending.extend(Metric(key, value, now, step) for key, value in values.items())
        self._logged.update(values)
        self._last_step = max(self._last_step, step)
        if len(self._pending) >= _METRICS_PER_BATCH or time.monotonic() - self._flushed >= FLUSH_S:
            self._flush()

    def _flush(self) -> None:
        """Send the pending metrics; if MLflow refuses, they stay for the next try (or the end)."""
        self._flushed = time.monotonic()
        while self._pending:
            self._client.log_batch(self._run_id, metrics=self._pending[:_METRICS_PER_BATCH])
            del self._pending[:_METRICS_PER_BATCH]

    def log_artifact(self, path: str) -> None:
        if Path(path).is_dir():
            self._client.log_artifacts(self._run_id, path, artifact_path=Path(path).name)
        else:
            self._client.log_artifact(self._run_id, path)

    def log_figure(self, name: str, figure: Any, step: int) -> None:
        self._client.log_figure(self._run_id, figure, f"figures/{name}-{step}.png")

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        columns: dict[str, list[Any]] = {}
        for row in rows:
            for key in row:
                columns.setdefault(str(key), [])
        data = {key: [row.get(key) for row in rows] for key in columns}
        self._client.log_table(self._run_id, data=data, artifact_file=f"tables/{name}.json")

    def finish(self, state: State, summary: Mapping[str, Any]) -> None:
        if self._run_id is None:
            return
        from mlflow.entities import Metric

        # Final metrics the trainer only returned (never logged) still belong in the run.
        now = int(time.time() * 1000)
        final = {mlflow_key(key): value for key, value in numeric_metrics(summary).items()}
        extra = {k: v for k, v in final.items() if k not in self._logged}
        self._pending.extend(Metric(k, v, now, self._last_step) for k, v in extra.items())
        try:
            self._flush()
            self._client.set_tag(self._run_id, TAG_STATE, state)
            if summary:
                self._client.log_dict(self._run_id, dict(summary), "summary.json")
        finally:
            self._client.set_terminated(self._run_id, status=_STATUS[state])

    def ref(self) -> str | None:
        return self._run_id
