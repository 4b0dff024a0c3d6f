"""Reading sweep files: YAML as W&B writes it, with numbers such as ``1e-5`` read as numbers.

PyYAML implements YAML 1.1, whose float pattern requires a dot: ``1e-5`` resolves to the string
``"1e-5"``. W&B users mean a number there, so :class:`SpecLoader` swaps in a float resolver that
also accepts exponent-only and dot-less forms. Everything else stays YAML 1.1 (``on``/``off`` are
booleans, as in W&B).

A sweep file is small; one that is not cannot be allowed to take the host down. A file over
:data:`MAX_SPEC_BYTES`, nesting deeper than :data:`MAX_DEPTH` and a value that YAML aliases expand
past :data:`MAX_VALUES` values (the "billion laughs") are each a located :class:`SpecError`, found
before anything walks the data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import SpecError, SpecIssue

_FLOAT_TAG = "tag:yaml.org,2002:float"

MAX_SPEC_BYTES = 1024 * 1024
"""The largest sweep file read (1 MiB: some 100,000 grid values)."""
MAX_DEPTH = 64
"""The deepest nesting of mappings and lists in a spec."""
MAX_VALUES = 200_000
"""The most values (scalars, mappings, lists) a spec may hold, counted with YAML aliases expanded."""
_SHOWN_STEPS = 8

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


class _TooDeepError(yaml.composer.ComposerError):
    pass


class SpecLoader(yaml.SafeLoader):
    """A ``SafeLoader`` whose float resolver reads ``1e-5`` as a number and that rejects duplicate keys.

    PyYAML keeps the last of two equal keys silently; a sweep file with ``lr:`` twice is a mistake.
    Nesting deeper than :data:`MAX_DEPTH` stops the parse at once (PyYAML's composer recurses).
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _TooDeepError(None, None, f"nesting deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

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
        SpecError: on a syntax error, located by line and column; on a text over
            :data:`MAX_SPEC_BYTES`, nesting over :data:`MAX_DEPTH` or aliases expanding past
            :data:`MAX_VALUES` values.

    >>> parse_yaml("lr: {min: 1e-5, max: 1e-1}")
    {'lr': {'min': 1e-05, 'max': 0.1}}
    """
    if len(text) > MAX_SPEC_BYTES:
        _too_large(source, text[: MAX_SPEC_BYTES + 1])
    _check_flow_depth(text, source)
    try:
        loader = SpecLoader(text)  # a SafeLoader
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "<root>"
        problem = exc.problem or exc.context or "invalid YAML"
        message = problem if isinstance(exc, _TooDeepError) else f"YAML syntax error: {problem}"
        raise SpecError([SpecIssue(source, where, message)]) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        where = f"line {line}, column {column}"
        raise SpecError(
            [SpecIssue(source, where, f"YAML error: {exc.reason} (character {exc.character!r})")]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError([SpecIssue(source, "<root>", f"YAML error: {exc}")]) from None
    except RecursionError:  # a deep stack already; MAX_DEPTH normally stops the parse first
        raise SpecError([SpecIssue(source, "<root>", f"nesting deeper than {MAX_DEPTH} levels")]) from None
    check_shape(data, source)
    return data


def check_shape(data: Any, source: str = "<mapping>") -> None:
    """Refuse data nested deeper than :data:`MAX_DEPTH` or holding over :data:`MAX_VALUES` values.

    Shared references count once per place they appear, as a reader of the data sees them: this
    is what stops YAML alias bombs (and reference cycles in a mapping given from Python). Sizes
    are computed once per distinct container, so the check costs what the data's text costs,
    however far its aliases would expand.

    Raises:
        SpecError: located at the dotted path of the innermost value that crosses a limit.

    >>> check_shape({"a": [[[1]]]})
    >>> bomb = [1]
    >>> for _ in range(6):
    ...     bomb = [bomb] * 10
    >>> try:
    ...     check_shape({"x": bomb})
    ... except SpecError as exc:
    ...     print(exc.issues[0])
    <mapping>: x[0]: expands to more than 200,000 values (repeated YAML aliases?)
    """
    if not _is_container(data):
        return
    sizes: dict[int, tuple[int, int]] = {}  # id -> (values, height) of a container already walked
    path: list[str] = []  # the steps from the root to the container on top of the stack
    on_path = {id(data)}
    # Each frame: the container, its children yet to see, its values so far, its height so far.
    stack: list[tuple[Any, Iterator[tuple[str, Any]], int, int]] = [(data, _children(data), 1, 1)]
    while stack:
        node, children, size, height = stack[-1]
        descend: tuple[str, Any] | None = None
        for step, child in children:
            depth = len(stack)  # the child's depth (the root is at 0)
            if not _is_container(child):
                size += 1
                if depth > MAX_DEPTH:
                    _too_deep(source, [*path, step])
                continue
            known = sizes.get(id(child))
            if known is not None:
                size += known[0]
                height = max(height, known[1] + 1)
                if depth - 1 + known[1] > MAX_DEPTH:
                    _too_deep(source, [*path, step])
                continue
            if id(child) in on_path:
                message = "contains itself (a reference cycle)"
                raise SpecError([SpecIssue(source, _dotted([*path, step]), message)])
            if depth >= MAX_DEPTH:
                _too_deep(source, [*path, step])
            descend = (step, child)
            break
        if descend is not None:
            stack[-1] = (node, children, size, height)
            step, child = descend
            path.append(step)
            on_path.add(id(child))
            stack.append((child, _children(child), 1, 1))
            continue
        stack.pop()
        on_path.discard(id(node))
        if size > MAX_VALUES:
            message = f"expands to more than {MAX_VALUES:,} values (repeated YAML aliases?)"
            raise SpecError([SpecIssue(source, _dotted(path), message)])
        sizes[id(node)] = (size, height)
        if path:
            path.pop()
        if stack:
            parent, parent_children, parent_size, parent_height = stack[-1]
            stack[-1] = (parent, parent_children, parent_size + size, max(parent_height, height + 1))


def _is_container(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return ((_key(key), item) for key, item in value.items())
    return ((f"[{index}]", item) for index, item in enumerate(value))


def _too_deep(source: str, path: list[str]) -> None:
    raise SpecError([SpecIssue(source, _dotted(path), f"nesting deeper than {MAX_DEPTH} levels")])


_BRACKETS = re.compile(r"[\[\]{}]")


def _check_flow_depth(text: str, source: str) -> None:
    """Refuse ``[[[[...`` nested past :data:`MAX_DEPTH` before PyYAML's scanner sees it.

    The scanner looks ahead over a whole flow collection, in time quadratic in its depth, before the
    composer's depth limit can act. Brackets inside quoted strings count too: a spec with over
    :data:`MAX_DEPTH` unclosed ones is refused, which no real spec has.
    """
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return
    depth = 0
    for match in _BRACKETS.finditer(text):
        if match.group() in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                at = match.start()
                line = text.count("\n", 0, at) + 1
                column = at - (text.rfind("\n", 0, at) + 1) + 1
                where = f"line {line}, column {column}"
                raise SpecError([SpecIssue(source, where, f"nesting deeper than {MAX_DEPTH} levels")])
        else:
            depth = max(0, depth - 1)


def _key(key: Any) -> str:
    text = str(key)
    return text if len(text) <= 40 else text[:37] + "..."


def _dotted(path: list[str]) -> str:
    out = ""
    for step in path[:_SHOWN_STEPS]:
        out += step if step.startswith("[") or not out else "." + step
    if len(path) > _SHOWN_STEPS:
        out += "..."
    return out or "<root>"


def _too_large(source: str, head: str) -> None:
    line = head.count("\n", 0, MAX_SPEC_BYTES) + 1
    raise SpecError(
        [
            SpecIssue(
                source,
                f"line {line}",
                f"the spec is larger than {MAX_SPEC_BYTES // 1024 // 1024} MiB, the most a sweep file may be",
            )
        ]
    )


def read_yaml(path: str | Path) -> Any:
    """Read and parse a YAML file with :class:`SpecLoader`.

    Raises:
        SpecError: if the file cannot be read or is not valid YAML.
    """
    source = str(path)
    try:
        with Path(path).open("rb") as file:
            raw = file.read(MAX_SPEC_BYTES + 1)  # never more: the file may be any size
        if len(raw) > MAX_SPEC_BYTES:
            _too_large(source, raw.decode("utf-8", errors="replace"))
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError(
            [SpecIssue(source, "<root>", f"must be a readable UTF-8 file, got: {reason}")]
        ) from None
    return parse_yaml(text, source)
