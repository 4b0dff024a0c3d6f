"""The README's spec examples are valid specs, and its two set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeper import load_spec

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("block", re.findall(r"```yaml\n(.*?)```", README, flags=re.S))
def test_yaml_examples_are_valid_specs(block: str, tmp_path: Path) -> None:
    path = tmp_path / "readme.yaml"
    path.write_text(block)
    assert load_spec(path).parameters


def test_ci_installs_and_tests_as_the_readme_says() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = next(line for line in README.splitlines() if line.endswith("python -m pytest"))
    for step in ("torch==2.13.0", "-e '.[dev]'"):
        assert step in test_command and f"pip install --quiet {step}" in ci
    assert ci.rstrip().endswith("python -m pytest")
