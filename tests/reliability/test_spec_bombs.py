"""Hostile sweep files: alias bombs, deep nesting, huge files are located errors, fast and small.

Each file is read by ``load_spec`` in a fresh interpreter, which reports how long the call took and
its own peak memory: the limits hold for the whole process, imports included. The peak is the
process's ``VmHWM`` on Linux: Linux carries ``ru_maxrss`` over ``execve``, so ``getrusage`` in a
child of a large pytest process reports the parent's size (``getrusage`` elsewhere).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweeper.errors import SpecError
from sweeper.spec.loader import MAX_DEPTH, parse_yaml
from sweeper.spec.reader import load_spec

_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    from sweeper.errors import SpecError
    from sweeper.spec.reader import load_spec

    started = time.monotonic()
    try:
        load_spec(sys.argv[1])
        error = None
    except SpecError as exc:
        error = [str(issue) for issue in exc.issues]
    seconds = time.monotonic() - started
    try:
        with open("/proc/self/status") as status:
            peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_mb = peak_kb / 1024
    print(json.dumps({"error": error, "seconds": seconds, "peak_mb": peak_mb}))
    """
)


def _probe(path: Path) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _alias_bomb(under: str) -> str:
    """The 'billion laughs': nine levels of nine aliases each, some 700 bytes."""
    lols = ", ".join(["lol"] * 9)
    lines = ["method: grid", "parameters:", "  x:", f"    {under}: &a [{lols}]"]
    previous = "a"
    for name in "bcdefghi":
        refs = ", ".join([f"*{previous}"] * 9)
        lines.append(f"    {name}{name}: &{name} [{refs}]")
        previous = name
    if under != "value":
        lines.append(f"    value: *{previous}")
    return "\n".join(lines) + "\n"


def _assert_fast_small_located(path: Path, where: str, says: str) -> None:
    result = _probe(path)
    error = result["error"]
    assert isinstance(error, list) and len(error) == 1, result
    assert error[0].startswith(f"{path}: {where}"), error
    assert says in error[0], error
    assert isinstance(result["seconds"], float) and result["seconds"] < 2.0, result
    assert isinstance(result["peak_mb"], float) and result["peak_mb"] < 200, result


@pytest.mark.parametrize("under", ["value", "description"])
def test_an_alias_bomb_is_a_located_error_within_two_seconds_and_200_mb(tmp_path: Path, under: str) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb(under))
    assert len(path.read_bytes()) < 1000
    _assert_fast_small_located(path, "parameters.x.", "expands to more than 200,000 values")


def test_nesting_5000_levels_deep_is_a_located_error_not_a_recursion_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("method: grid\nparameters:\n  x:\n    value: " + "[" * 5000 + "1" + "]" * 5000 + "\n")
    where = f"line 4, column {12 + MAX_DEPTH}"  # the bracket that opens level MAX_DEPTH + 1
    _assert_fast_small_located(path, where, f"nesting deeper than {MAX_DEPTH}")


def test_a_50_mb_spec_is_a_located_error_read_no_further_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as file:
        file.write("method: grid\nparameters:\n  x:\n    values:\n")
        chunk = "".join(f"    - {i}\n" for i in range(100_000))
        while file.tell() < 50 * 1024 * 1024:
            file.write(chunk)
    _assert_fast_small_located(path, "line ", "larger than 1 MiB")


def test_deep_nesting_as_block_yaml_and_as_a_python_mapping_is_located() -> None:
    block = "".join("  " * level + f"k{level}:\n" for level in range(200)) + "  " * 200 + "leaf: 1\n"
    with pytest.raises(SpecError, match="nesting deeper than 64 levels"):
        parse_yaml(block, "deep.yaml")
    nested: dict[str, object] = {"value": 1}
    for _ in range(5000):
        nested = {"value": nested}
    with pytest.raises(SpecError, match=r"<mapping>: parameters\.x\.value\.value.*nesting deeper"):
        load_spec({"method": "grid", "parameters": {"x": nested}})


def test_a_reference_cycle_in_a_python_mapping_is_an_error_not_a_hang() -> None:
    cycle: dict[str, object] = {}
    cycle["value"] = cycle
    with pytest.raises(SpecError, match=r"<mapping>: parameters\.x\.value: contains itself"):
        load_spec({"method": "grid", "parameters": {"x": cycle}})


def test_specs_with_ordinary_aliases_and_merge_keys_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "method: grid\nmetric: {name: loss}\nparameters:\n"
        "  lr: &lr {values: [0.1, 0.01]}\n  lr2: *lr\n  opt: {<<: *lr, values: [1, 2]}\n"
    )
    spec = load_spec(path)
    assert [p.name for p in spec.parameters] == ["lr", "lr2", "opt"]
