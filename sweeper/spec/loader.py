"""Reading sweep files: YAML as W&B writes it, with numbers such as ``1e-5`` read as numbers.

PyYAML implements YAML 1.1, whose float pattern requires a dot: ``1e-5`` resolves to the string
``"1e-5"``. W&B users mean a number there, so :class:`SpecLoader` swaps in a float resolver that
also accepts exponent-only and dot-less forms. Everything else stays YAML 1.1 (``on``/``off`` are
booleans, as in W&B).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import SpecError, SpecIssue

_FLOAT_TAG = "tag:yaml.org,2002:float"

# YAML 1.1's float pattern, plus `1e5` / `1E-5` / `+1e+5` (no dot) and `1.e5`.
_FLOAT_PATTERN = re.compile(
    r"""^(?:
        [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
      | [-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
      | [-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
      | [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
      | [-+]?\.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.VERBOSE,
)


class SpecLoader(yaml.SafeLoader):
    """A ``SafeLoader`` whose float resolver reads ``1e-5`` as a number and that rejects duplicate keys.

    PyYAML keeps the last of two equal keys silently; a sweep file with ``lr:`` twice is a mistake.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` then overriding a merged key is fine
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# Replace (not append to) the inherited float resolver, on a copy owned by SpecLoader.
SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SpecLoader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_PATTERN, list("-+0123456789."))


def parse_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with :class:`SpecLoader`.

    Raises:
        SpecError: on a syntax error, located by line and column.

    >>> parse_yaml("lr: {min: 1e-5, max: 1e-1}")
    {'lr': {'min': 1e-05, 'max': 0.1}}
    """
    try:
        return yaml.load(text, Loader=SpecLoader)  # SpecLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "<root>"
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError([SpecIssue(source, where, f"YAML syntax error: {problem}")]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        where = f"line {line}, column {column}"
        raise SpecError(
            [SpecIssue(source, where, f"YAML error: {exc.reason} (character {exc.character!r})")]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(source, "<root>", f"YAML error: {exc}")]) from None


def read_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file with :class:`SpecLoader`.

    Raises:
        SpecError: if the file cannot be read or is not valid YAML.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(
            [SpecIssue(source, "<root>", f"must be a readable UTF-8 file, got: {reason}")]
        ) from None
    return parse_yaml(text, source)
