"""W&B's history rules, as our bridge replays them: which ``log`` calls make a row, at which step.

A row is committed as W&B's ``Run.log`` commits it (``step=`` and ``commit=`` included); each committed
row is what reaches ``trial.log``. Only numbers and strings go on to the trial: media, tables and
artifacts stay with W&B.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from sweeper.plain import flatten


class History:
    """W&B's step/commit rules: which rows a series of ``log(data, step, commit)`` calls commits, at
    which step.

    Mirrors ``wandb.sdk.wandb_run.Run._log`` (the run's step) and W&B's partial-history handler
    (the rows): data accumulates in the current row; ``commit`` (default: True without ``step``,
    False with it) commits the row and moves to the next step; a ``step`` beyond the current one
    commits the pending row first; a ``step`` below it is dropped, as W&B drops it. The run's end
    commits what is pending. Each row comes with its W&B step (``_step``: 0, 1, ...), so the trial
    sees the rows at the steps the W&B run shows.

    Example:
        >>> h = History()
        >>> h.log({"a": 1}, None, False), h.log({"b": 2}, None, None)
        ([], [({'a': 1, 'b': 2}, 0)])
        >>> h.log({"c": 3}, 5, None), h.log({"d": 4}, 6, None), h.close()
        ([], [({'c': 3}, 5)], [({'d': 4}, 6)])
    """

    def __init__(self, step: int = 0) -> None:
        self.step = step
        self._row: dict[str, Any] = {}

    def log(
        self, data: Mapping[str, Any], step: int | None, commit: bool | None
    ) -> list[tuple[dict[str, Any], int]]:
        """The rows this call commits."""
        out: list[tuple[dict[str, Any], int]] = []
        if step is not None:
            step = int(step)
            if step < self.step:
                return out
            if step > self.step:
                out += self._commit()
                self.step = step
        self._row.update(data)
        if (step is None and commit is None) or commit:
            out += self._commit()
            self.step += 1
        return out

    def close(self) -> list[tuple[dict[str, Any], int]]:
        """The pending row, committed by the run's end."""
        return self._commit()

    def _commit(self) -> list[tuple[dict[str, Any], int]]:
        if not self._row:
            return []
        row, self._row = self._row, {}
        return [(row, self.step)]


def plain_metrics(data: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a W&B log call a trial records: numbers, bools and strings, nested keys dotted.

    Media, tables, histograms and other W&B objects stay in the W&B run only.

    Example:
        >>> import numpy as np
        >>> plain_metrics({"loss": np.float32(0.5), "img": object(), "opt": {"lr": 1}})
        {'loss': 0.5, 'opt.lr': 1}
    """
    out: dict[str, Any] = {}
    for key, value in flatten(data, keep_empty=False).items():
        if value is None or isinstance(value, bool | int | float | str):
            out[key] = value
            continue
        item = getattr(value, "item", None)  # numpy and torch scalars, one-element arrays and tensors
        size = getattr(value, "size", None)
        if callable(item) and (size in (1, ()) or (callable(size) and _numel(value) == 1)):
            with contextlib.suppress(Exception):
                scalar = item()
                if isinstance(scalar, bool | int | float):
                    out[key] = scalar
    return out


def _numel(value: Any) -> int:
    numel = getattr(value, "numel", None)
    return int(numel()) if callable(numel) else -1
