"""The HTML report renders in a real headless Chromium, and its PNGs are real pictures drawn without one.

Only these tests need a browser, to check the page a user opens: Chromium is a system package
(Debian: ``apt-get install chromium``); CI must install it. Writing a report never needs one.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from inspect_sweeps import SPEC, Built, create, finish_trial, start_trial
from PIL import Image, ImageStat

import sweeper
from sweeper.analysis import report
from sweeper.cli import main

CHROMIUM_HINT = "install a Chromium browser (Debian/Ubuntu: apt-get install chromium)"


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = f"a Chromium browser is needed to check the rendered page: {CHROMIUM_HINT}"
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


NO_BROWSER = """
import sys
import plotly.io
# kaleido and choreographer (when installed) would need a browser for a PNG: make them unimportable.
for name in ("kaleido", "choreographer"):
    sys.modules[name] = None
plotly.io.write_image = plotly.io.write_images = None
from sweeper.cli import main
main()
"""


def test_report_without_a_browser_writes_html_and_pngs_and_exits_0(finished: Built, tmp_path: Path) -> None:
    # As on a plain machine: no browser on PATH or $BROWSER_PATH, and kaleido unusable; the
    # PNGs are drawn by matplotlib.
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python").symlink_to(sys.executable)
    env = {**os.environ, "PATH": str(bare), "BROWSER_PATH": ""}
    out = tmp_path / "report"
    command = ["report", finished.sweep_id, "--out", str(out), "--storage", finished.url]
    done = subprocess.run(
        [sys.executable, "-c", NO_BROWSER, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[0] == f"report: {out / 'index.html'}"
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == [
        "history-0.png",
        "importances.png",
        "learning-curves.png",
        "parallel-coordinates.png",
        "slices.png",
    ]
    for png in pngs:
        assert_picture(png)


def test_without_matplotlib_the_report_skips_pngs_with_one_note(
    finished: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "png_unavailable", lambda: "PNGs need matplotlib (as on this machine)")
    result = CliRunner().invoke(
        main, ["report", finished.sweep_id, "--out", str(tmp_path), "--storage", finished.url]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "index.html").exists() and not list(tmp_path.glob("*.png"))
    assert result.stderr == "note: no PNGs written: PNGs need matplotlib (as on this machine)\n"
    monkeypatch.undo()
    assert report.png_unavailable() == ""  # matplotlib is installed here


def test_compare_plot_writes_a_png_without_a_browser(finished: Built, tmp_path: Path) -> None:
    a, b = (t.number for t in finished.study.trials[:2])
    plot = tmp_path / "curves.png"
    result = CliRunner().invoke(
        main,
        ["compare", finished.sweep_id, str(a), str(b), "--storage", finished.url, "--plot", str(plot)],
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == f"plot: {plot}\n"
    assert_picture(plot)


def test_a_plot_matplotlib_cannot_draw_is_a_note_and_the_rest_are_written(
    finished: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = report.figures

    def with_a_broken_png(*args: object, **kwargs: object) -> list[report.Figure]:
        def broken() -> object:
            raise ValueError("cannot draw this one")

        figs = real(*args, **kwargs)  # type: ignore[arg-type]
        return [dataclasses.replace(f, draw_png=broken) if f.key == "slices" else f for f in figs]

    monkeypatch.setattr(report, "figures", with_a_broken_png)
    result = CliRunner().invoke(
        main, ["report", finished.sweep_id, "--out", str(tmp_path), "--storage", finished.url]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == "note: no PNG of slices: cannot draw this one\n"
    assert "slices.png" not in {p.name for p in tmp_path.glob("*.png")}
    assert len(list(tmp_path.glob("*.png"))) == 4
    assert 'id="plot-slices"' in (tmp_path / "index.html").read_text()  # the page still has it
