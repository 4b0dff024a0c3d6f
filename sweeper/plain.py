"""Plain data: flattening nested configs, and the three ways we turn values into JSON.

The policies differ on purpose, so each has a name:

- :func:`strict_json` is for what we print (``--json``, exports): non-finite floats become ``null``,
  so any strict JSON reader accepts it.
- :func:`event_json` is for event logs (the ``jsonl`` tracker): non-finite floats are spelled
  ``"NaN"``/``"Infinity"`` so nothing is lost, numpy scalars are unwrapped, anything else is ``str``.
- :func:`stored_metrics` is for a trial's metrics in the storage: a flat mapping of numbers,
  strings, bools and None, non-finite floats kept as their text.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

_PLAIN = frozenset({str, int, bool, type(None)})
# C0 and C1 controls (ESC, BEL, CR, LF, ...), DEL, and the Unicode bidirectional controls (U+202E
# and friends) that make a terminal show text other than what it is.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    r"""``text`` safe to show on a terminal: control characters and bidi controls as escapes.

    Names and values come from users and trainers; printed raw, an ESC could recolour or clear the
    terminal, a CR/LF forge a line, a U+202E reverse what follows. JSON output needs none of this
    (JSON escapes them itself).

    >>> printable("a\x1b[2Jb\rc\u202ed")
    'a\\x1b[2Jb\\rc\\u202ed'
    >>> printable("lr=0.1 ünïcödé ✓")
    'lr=0.1 ünïcödé ✓'
    """
    return _UNPRINTABLE.sub(_escape, text) if _UNPRINTABLE.search(text) else text


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def flatten(mapping: Mapping[str, Any], prefix: str = "", *, keep_empty: bool = True) -> dict[str, Any]:
    """Nested mappings as dotted keys; an empty mapping stays a value unless ``keep_empty`` is False.

    >>> flatten({"a": {"b": 1, "c": {}}})
    {'a.b': 1, 'a.c': {}}
    >>> flatten({"a": {"b": 1, "c": {}}}, keep_empty=False)
    {'a.b': 1}
    """
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and (value or not keep_empty):
            flat.update(flatten(value, f"{name}.", keep_empty=keep_empty))
        else:
            flat[name] = value
    return flat


def lookup(mapping: Mapping[str, Any], dotted: str) -> Any:
    """The value at a dotted key of a nested mapping, ``None`` when absent.

    >>> lookup({"model": {"depth": 4}}, "model.depth")
    4
    """
    if dotted in mapping:
        return mapping[dotted]
    node: Any = mapping
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (bools, non-numbers, NaN and infinities).

    >>> finite(3), finite(float("nan")), finite(True), finite("2.5")
    (3.0, None, None, 2.5)
    """
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def iso(moment: datetime | None) -> str | None:
    """A timestamp as ISO 8601, None kept."""
    return moment.isoformat() if moment is not None else None


def strict_json_dict(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`strict_json` for a mapping, typed as one."""
    return {str(k): strict_json(v) for k, v in mapping.items()}


def strict_json(value: Any) -> Any:
    """``value`` with non-finite floats as ``None``, tuples as lists and enum members as their
    values, so ``json.dumps`` is strict JSON.

    >>> strict_json({"loss": float("nan"), "steps": (1, 2)})
    {'loss': None, 'steps': [1, 2]}
    """
    kind = type(value)
    # Exact-type checks first: this runs on every leaf of 10,000 records.
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {str(k): strict_json(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [strict_json(v) for v in value]
    if isinstance(value, enum.Enum):  # as orjson writes one (sweeper.analysis.records.TrialRecord.to_json)
        return strict_json(value.value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, datetime):
        return iso(value)
    return value


def event_json(value: Any) -> Any:
    """``value`` for an event log: non-finite floats spelled out, numpy scalars unwrapped, else ``str``.

    >>> event_json({"loss": float("inf"), "tags": ("a",)})
    {'loss': 'Infinity', 'tags': ['a']}
    """
    kind = type(value)
    # Exact types before the ABC check: every trial's events and every logged value pass here.
    if kind in _PLAIN:
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if kind is dict or isinstance(value, Mapping):
        return {str(k): event_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [event_json(v) for v in value]
    if isinstance(value, int | str):  # their subclasses (an IntEnum member, a str of a library's)
        return value
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return event_json(item())
        except (TypeError, ValueError):
            pass
    return str(value)


def stored_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Metrics reduced to what JSON storages keep: numbers, strings, bools, None.

    >>> stored_metrics({"loss": float("nan"), "acc": 0.5, "model": object()})["loss"]
    'nan'
    """
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if value is None or isinstance(value, (str, bool, int)):
            out[str(key)] = value
        elif isinstance(value, float):
            out[str(key)] = value if math.isfinite(value) else str(value)
        else:
            number = finite(value)
            out[str(key)] = number if number is not None else repr(value)[:200]
    return out


def first_line(reason: str | None, limit: int = 160) -> str:
    """The head of a fail reason, as summaries and tables show it (the rest is the traceback's tail).

    >>> first_line("ValueError: boom\\nTraceback (most recent call last): ...")
    'ValueError: boom'
    """
    text = (reason or "").strip()
    head = text.splitlines()[0] if text else "no reason given"
    return head if len(head) <= limit else head[: limit - 3] + "..."
