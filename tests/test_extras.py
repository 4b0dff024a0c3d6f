"""Commands whose libraries come with an extra name it instead of failing with a traceback."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
from click.testing import CliRunner

from sweeper.cli import main


@pytest.mark.parametrize(
    ("args", "package"),
    [(["report", "anything", "--out", "out"], "plotly"), (["dashboard"], "optuna_dashboard")],
)
def test_missing_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, args: list[str], package: str
) -> None:
    monkeypatch.setattr(
        "sweeper.extras.find_spec", lambda name, *a: None if name == package else find_spec(name, *a)
    )
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert f"needs the {package!r} package, which is not installed" in result.stderr
    assert "pip install -e '.[dashboard]'" in result.stderr
    assert "Traceback" not in result.output
