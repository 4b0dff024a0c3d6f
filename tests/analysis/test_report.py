"""The HTML report renders in a real headless Chromium, and its PNGs are real pictures.

Chromium is a system package (Debian: ``apt-get install chromium``); CI must install it.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from inspect_sweeps import SPEC, Built, create, finish_trial, start_trial
from PIL import Image, ImageStat

import sweeper
from sweeper.analysis import report
from sweeper.cli import main
from sweeper.errors import UsageError


@pytest.fixture(scope="module")
def chromium() -> str:
    path = report.chromium_path()
    if path is None:
        message = f"a Chromium browser is needed to render reports: {report.CHROMIUM_HINT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def rendered_dom(chromium: str, page: Path) -> str:
    """The page's DOM after its scripts ran, from headless Chromium."""
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=15000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


def drawn_plots(dom: str) -> dict[str, int]:
    """For each plot div of the report, how many non-empty SVG paths plotly drew in it."""
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div id="plot-([a-z0-9-]+)"', dom)]
    out = {}
    for i, (start, key) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(dom)
        chunk = dom[start:end]
        out[key] = len(re.findall(r'<path[^>]* d="M', chunk)) if 'class="main-svg"' in chunk else 0
    return out


def assert_picture(path: Path) -> None:
    """A PNG that holds a drawing: many colours and real contrast, not a blank canvas."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        assert rgb.size[0] >= 600 and rgb.size[1] >= 400
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50, f"{path.name} has only {len(colours)} colours"
        assert max(ImageStat.Stat(rgb.convert("L")).stddev) > 10, f"{path.name} is nearly uniform"


def test_report_plots_are_drawn_in_chromium_and_as_pngs(
    finished: Built, tmp_path: Path, chromium: str
) -> None:
    results = sweeper.load(finished.sweep_id, storage=finished.url)
    written = report.write_report(results, tmp_path / "report", top=5)

    keys = {"history-0", "parallel-coordinates", "importances", "slices", "learning-curves"}
    assert {f.key for f in written.figures if f.figure is not None} == keys
    assert {p.name for p in written.pngs} == {f"{k}.png" for k in keys}
    for png in written.pngs:
        assert_picture(png)

    html = written.html.read_text()
    assert html.count('<script type="text/javascript">/**\n* plotly.js') <= 1  # plotly.js inlined once
    assert f"trial {finished.study.best_trial.number}" in html  # the learning curves of the top trials
    drawn = drawn_plots(rendered_dom(chromium, written.html))
    assert set(drawn) == keys
    for key, paths in drawn.items():
        assert paths >= 3, f"plot {key} drew {paths} paths"


def test_multi_objective_report_has_one_history_per_objective_and_a_pareto_front(
    multi: Built, tmp_path: Path, chromium: str
) -> None:
    written = report.write_report(sweeper.load(multi.sweep_id, storage=multi.url), tmp_path, png=False)
    assert written.pngs == ()
    drawn = drawn_plots(rendered_dom(chromium, written.html))
    assert {"history-0", "history-1", "pareto-front", "parallel-coordinates", "slices"} <= set(drawn)
    assert all(paths >= 3 for paths in drawn.values()), drawn
    assert "Pareto front" in written.html.read_text()


def test_report_of_a_young_sweep_says_what_it_cannot_draw(journal_url: str, tmp_path: Path) -> None:
    built = create(journal_url, SPEC)
    finish_trial(built, start_trial(built))
    written = report.write_report(sweeper.load(built.sweep_id, storage=built.storage), tmp_path, png=False)
    notes = {f.key: f.note for f in written.figures if f.figure is None}
    assert notes == {"importances": "needs at least 2 complete trials"}
    assert "Not drawn: needs at least 2 complete trials" in written.html.read_text()


def test_report_command_writes_html_and_pngs(finished: Built, tmp_path: Path, chromium: str) -> None:
    out = tmp_path / "r"
    result = CliRunner().invoke(
        main, ["report", finished.sweep_id, "--out", str(out), "--storage", finished.url]
    )
    assert result.exit_code == 0, result.output
    assert f"report: {out / 'index.html'}" in result.stdout
    assert sorted(p.name for p in out.glob("*.png")) == [
        "history-0.png",
        "importances.png",
        "learning-curves.png",
        "parallel-coordinates.png",
        "slices.png",
    ]


def test_png_export_without_chromium_is_a_clear_error(
    finished: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "chromium_path", lambda: None)  # as on a machine without a browser
    results = sweeper.load(finished.sweep_id, storage=finished.url)
    with pytest.raises(UsageError, match=r"PNG export needs a Chromium browser .* apt-get install chromium"):
        report.write_report(results, tmp_path)
    assert (tmp_path / "index.html").exists()  # the HTML report is written first
    result = CliRunner().invoke(
        main, ["report", finished.sweep_id, "--out", str(tmp_path), "--storage", finished.url]
    )
    assert result.exit_code == 2
    assert (
        result.stderr.startswith("error: PNG export needs a Chromium browser") and "--no-png" in result.stderr
    )
