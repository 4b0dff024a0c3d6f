"""The embedded default tracker: one JSON line per event, one file per trial, under the sweep directory.

Readable with nothing but Python (:func:`read_events`). Files sit in ``<path>/<run name>.jsonl``
(``path`` defaults to ``<sweep_dir>/trials``); artifacts and figures are copied next to it, into
``<path>/<run name>/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TextIO

from sweeper.plain import event_json
from sweeper.trackers.base import RunInfo, State, Tracker, safe_filename


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The events of one trial's jsonl file, in order.

    Example:
        >>> import tempfile
        >>> run = RunInfo("abcdefgh", "demo", 3, sweep_dir=tempfile.mkdtemp())
        >>> tracker = JsonlTracker(JsonlTracker.prepare({}, "abcdefgh", "demo", run.sweep_dir))
        >>> tracker.start(run, {})
        >>> tracker.finish("completed", {"loss": 0.1})
        >>> [event["event"] for event in read_events(tracker.ref())]
        ['start', 'finish']
    """
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class JsonlTracker(Tracker):
    """Writes each event of a trial as one JSON line: start, metrics, media, finish.

    Options:
        path: The directory holding the per-trial files (default ``<sweep_dir>/trials``).
    """

    name: ClassVar[str] = "jsonl"
    options: ClassVar[frozenset[str]] = frozenset({"path"})

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._file: Path | None = None
        self._handle: TextIO | None = None
        self._files_dir: Path | None = None

    @classmethod
    def prepare(
        cls, options: Mapping[str, Any], sweep_id: str, sweep_name: str, sweep_dir: str
    ) -> dict[str, Any]:
        path = Path(str(options.get("path") or Path(sweep_dir) / "trials")).expanduser()
        return {**options, "path": str(path.resolve())}

    def start(self, run: RunInfo, environment: Mapping[str, Any]) -> None:
        directory = Path(str(self.config.get("path") or Path(run.sweep_dir) / "trials"))
        directory.mkdir(parents=True, exist_ok=True)
        stem = safe_filename(run.run_name)
        self._file = directory / f"{stem}.jsonl"
        self._files_dir = directory / stem
        # Line-buffered append: each event reaches the disk whole, even if the worker dies later.
        self._handle = open(self._file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._write(
            "start",
            run={
                "name": run.run_name,
                "sweep_id": run.sweep_id,
                "sweep_name": run.sweep_name,
                "trial_number": run.trial_number,
                "attempt": run.attempt,
                "tags": list(run.tags),
            },
            config=run.config,
            params=run.params,
            environment=environment,
        )

    def _write(self, event: str, **fields: Any) -> None:
        if self._handle is None:
            raise RuntimeError("the jsonl tracker was not started")
        record = {"event": event, "time": time.time(), **fields}
        self._handle.write(json.dumps(event_json(record), allow_nan=False) + "\n")

    def _copy_target(self, name: str) -> Path:
        assert self._files_dir is not None  # set by start(), which _write() checks first
        self._files_dir.mkdir(parents=True, exist_ok=True)
        return self._files_dir / name

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        # The embedded log keeps everything as given (non-numbers and NaN too).
        self._write("metrics", step=step, metrics=dict(metrics))

    def log_artifact(self, path: str) -> None:
        source = Path(path)
        self._write("artifact", source=str(source.resolve()))
        target = self._copy_target(source.name)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)

    def log_figure(self, name: str, figure: Any, step: int) -> None:
        filename = f"{safe_filename(name)}-{step}.png"
        self._write("figure", name=name, step=step, file=filename)
        figure.savefig(self._copy_target(filename), format="png")

    def log_histogram(self, name: str, values: Sequence[float], step: int) -> None:
        import numpy as np

        array = np.asarray(values, dtype=float).ravel()
        array = array[np.isfinite(array)]
        counts, edges = np.histogram(array, bins=min(64, array.size)) if array.size else ((), ())
        self._write(
            "histogram",
            name=name,
            step=step,
            count=int(array.size),
            min=float(array.min()) if array.size else None,
            max=float(array.max()) if array.size else None,
            mean=float(array.mean()) if array.size else None,
            counts=[int(c) for c in counts],
            edges=[float(e) for e in edges],
        )

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self._write("table", name=name, rows=[dict(row) for row in rows])

    def finish(self, state: State, summary: Mapping[str, Any]) -> None:
        try:
            self._write("finish", state=state, summary=summary)
        finally:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def ref(self) -> str | None:
        return str(self._file) if self._file is not None else None
