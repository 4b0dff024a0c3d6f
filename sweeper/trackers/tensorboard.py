"""TensorBoard: event files per trial under ``<logdir>/<sweep name>/<run name>``, with the hparams summary.

Written with the ``tensorboard`` package's own protos and event writer (no TensorFlow, no torch):
scalars per step, histograms, figures as images, tables as markdown text, and at the end the
HParams plugin's session summary, so the HPARAMS tab compares trials (with their state).
TensorBoard keeps no files: artifacts are skipped with a note.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from sweeper.trackers.base import RunInfo, State, Tracker, flatten, numeric_metrics, safe_filename

# The hparam every session carries, so the HPARAMS tab can filter trials by outcome.
STATE_HPARAM = "sweeper/state"
ENVIRONMENT_TAG = "sweeper/environment"


def _hparam_value(value: Any) -> bool | float | str:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value)
    return json.dumps(value, default=str)


def _markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(map(str, row)))
    names = list(columns)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(str(row.get(name, "")) for name in names) + " |" for row in rows]
    return "\n".join(lines)


class TensorboardTracker(Tracker):
    """Writes each trial's scalars, media and hparams as TensorBoard event files.

    Options:
        logdir: The TensorBoard log directory (default ``<sweep_dir>/tensorboard``); point
            ``tensorboard --logdir`` at it.
    """

    name: ClassVar[str] = "tensorboard"
    requires: ClassVar[str | None] = "tensorboard"
    extra: ClassVar[str | None] = "tensorboard"
    options: ClassVar[frozenset[str]] = frozenset({"logdir"})

    def __init__(self, options: Mapping[str, Any]) -> None:
        super().__init__(options)
        self._writer: Any = None
        self._dir: Path | None = None
        self._run: RunInfo | None = None
        self._logged: set[str] = set()
        self._last_step = 0

    @classmethod
    def prepare(
        cls, options: Mapping[str, Any], sweep_id: str, sweep_name: str, sweep_dir: str
    ) -> dict[str, Any]:
        logdir = Path(str(options.get("logdir") or Path(sweep_dir) / "tensorboard")).expanduser()
        return {**options, "logdir": str(logdir.resolve())}

    def start(self, run: RunInfo, environment: Mapping[str, Any]) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        logdir = Path(str(self.config.get("logdir") or Path(run.sweep_dir) / "tensorboard"))
        self._dir = logdir / safe_filename(run.sweep_name) / safe_filename(run.run_name)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self._dir), max_queue_size=1024, flush_secs=10)
        self._run = run
        text = "```json\n" + json.dumps(dict(environment), indent=2, default=str) + "\n```"
        self._text(ENVIRONMENT_TAG, text, 0)

    def _emit(self, summary: Any, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        self._writer.add_event(Event(wall_time=time.time(), step=step, summary=summary))

    def _text(self, tag: str, text: str, step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.compat.proto.tensor_pb2 import TensorProto
        from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
        from tensorboard.compat.proto.types_pb2 import DT_STRING
        from tensorboard.plugins.text.metadata import create_summary_metadata

        tensor = TensorProto(
            dtype=DT_STRING, string_val=[text.encode("utf-8")], tensor_shape=TensorShapeProto()
        )
        metadata = create_summary_metadata(display_name=tag, description="")
        self._emit(Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)]), step)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = numeric_metrics(metrics)
        if values:
            summary = Summary(value=[Summary.Value(tag=k, simple_value=v) for k, v in values.items()])
            self._emit(summary, step)
        self._logged.update(values)
        self._last_step = max(self._last_step, step)

    def log_histogram(self, name: str, values: Sequence[float], step: int) -> None:
        import numpy as np
        from tensorboard.compat.proto.summary_pb2 import HistogramProto, Summary

        array = np.asarray(values, dtype=float).ravel()
        array = array[np.isfinite(array)]
        if array.size == 0:
            return
        counts, edges = np.histogram(array, bins=min(64, array.size))
        histogram = HistogramProto(
            min=float(array.min()),
            max=float(array.max()),
            num=float(array.size),
            sum=float(array.sum()),
            sum_squares=float(np.square(array).sum()),
            bucket_limit=[float(e) for e in edges[1:]],
            bucket=[float(c) for c in counts],
        )
        self._emit(Summary(value=[Summary.Value(tag=name, histo=histogram)]), step)

    def log_figure(self, name: str, figure: Any, step: int) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        png = buffer.getvalue()
        # A PNG's IHDR chunk holds width and height at bytes 16..24.
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
        self._emit(Summary(value=[Summary.Value(tag=name, image=image)]), step)

    def log_table(self, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self._text(name, _markdown_table(rows), self._last_step)

    def _hparams(self, state: State) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        assert self._run is not None  # set by start()
        start = plugin_data_pb2.SessionStartInfo(group_name=self._run.sweep_name, start_time_secs=time.time())
        hparams = {key: _hparam_value(v) for key, v in flatten(self._run.config).items() if v is not None}
        hparams[STATE_HPARAM] = state
        for key, value in hparams.items():
            if isinstance(value, bool):
                start.hparams[key].bool_value = value
            elif isinstance(value, float):
                start.hparams[key].number_value = value
            else:
                start.hparams[key].string_value = value
        status = api_pb2.STATUS_FAILURE if state == "failed" else api_pb2.STATUS_SUCCESS
        end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
        for tag, data in (
            (metadata.SESSION_START_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_start_info=start)),
            (metadata.SESSION_END_INFO_TAG, plugin_data_pb2.HParamsPluginData(session_end_info=end)),
        ):
            value = Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data))
            self._emit(Summary(value=[value]), 0)

    def finish(self, state: State, summary: Mapping[str, Any]) -> None:
        if self._writer is None:
            return
        try:
            # Final metrics the trainer only returned still belong in the HPARAMS tab's columns.
            extra = {k: v for k, v in numeric_metrics(summary).items() if k not in self._logged}
            if extra:
                self.log_metrics(extra, self._last_step)
            self._hparams(state)
        finally:
            self._writer.close()

    def ref(self) -> str | None:
        return str(self._dir) if self._dir is not None else None
