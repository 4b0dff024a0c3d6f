"""The typed getters the spec reader is built from: each records a located issue and returns None."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sweeper.errors import SpecIssue

_PLAIN_KEY = re.compile(r"^[^\s.'\"]+$")


def _show(value: Any) -> str:
    """A value as the user would recognise it in a message, kept short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range
        return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _join(path: str, key: Any) -> str:
    # Keys that would blur the dotted path (empty, spaces, dots, non-strings) are shown quoted.
    segment = key if isinstance(key, str) and _PLAIN_KEY.match(key) else repr(key)
    return f"{path}.{segment}" if path else segment


def _is_plain_data(value: Any) -> bool:
    """Whether ``value`` survives a JSON round trip (what categorical choices are stored as)."""
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_plain_data(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _is_plain_data(v) for k, v in value.items())
    return False


class Checks:
    """Collects located issues; the readers of each part of the spec build on it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[SpecIssue] = []

    def error(self, path: str, message: str) -> None:
        self.issues.append(SpecIssue(self.source, path or "<root>", message))

    # -- typed getters: each records an issue and returns None when the value is wrong --

    def mapping(self, value: Any, path: str, what: str = "a mapping") -> Mapping[Any, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.error(path, f"must be {what}, got {_show(value)}")
        return None

    def known_keys(self, block: Mapping[Any, Any], path: str, known: Sequence[str]) -> None:
        for key in block:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(known)}"
            self.error(_join(path, key), f"unknown key; {hint}")

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> Any:
        if value in choices and isinstance(value, str):
            return value
        close = difflib.get_close_matches(value, list(choices), n=1) if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.error(path, f"must be one of {', '.join(choices)}, got {_show(value)}{hint}")
        return None

    def string(self, value: Any, path: str) -> str | None:
        if isinstance(value, str) and value:
            return value
        self.error(path, f"must be a non-empty string, got {_show(value)}")
        return None

    def number(
        self, value: Any, path: str, *, above: float | None = None, at_least: float | None = None
    ) -> Any:
        if not _is_number(value):
            self.error(path, f"must be a finite number, got {_show(value)}")
            return None
        return self._bounded(value, path, "a number", above, at_least)

    def integer(
        self, value: Any, path: str, *, above: float | None = None, at_least: float | None = None
    ) -> Any:
        if not _is_int(value):
            self.error(path, f"must be an integer, got {_show(value)}")
            return None
        return self._bounded(value, path, "an integer", above, at_least)

    def boolean(self, value: Any, path: str) -> bool | None:
        if isinstance(value, bool):
            return value
        self.error(path, f"must be true or false, got {_show(value)}")
        return None

    def _bounded(self, value: Any, path: str, kind: str, above: float | None, at_least: float | None) -> Any:
        if above is not None and not value > above:
            self.error(path, f"must be {kind} > {above:g}, got {_show(value)}")
            return None
        if at_least is not None and not value >= at_least:
            self.error(path, f"must be {kind} >= {at_least:g}, got {_show(value)}")
            return None
        return value
