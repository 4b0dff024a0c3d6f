"""A shareable report of a sweep: one self-contained HTML page of plots, and PNG copies of each plot.

The plots come from Optuna's visualization module (optimization history, parallel coordinates,
parameter importances, slices, Pareto front) plus the learning curves of the top trials drawn with
plotly from the intermediate values. PNG export goes through kaleido, which drives a Chromium browser.
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial

from sweeper.analysis.records import TrialRecord
from sweeper.analysis.results import SweepResults
from sweeper.errors import UsageError

if TYPE_CHECKING:
    import plotly.graph_objects as go

EVALUATORS = ("fanova", "ped-anova", "mdi")
CHROMIUM_HINT = (
    "install a Chromium browser (Debian/Ubuntu: apt-get install chromium) or point $BROWSER_PATH at one"
)


@dataclass(frozen=True)
class Figure:
    """One plot of the report: a file-safe key, a title, and the plotly figure (``None`` when skipped)."""

    key: str
    title: str
    figure: go.Figure | None = field(repr=False)
    note: str = ""


@dataclass(frozen=True)
class Report:
    """Where a written report lives."""

    html: Path
    pngs: tuple[Path, ...]
    figures: tuple[Figure, ...]


def importances(results: SweepResults, evaluator: str = "fanova") -> dict[str, dict[str, float]]:
    """Parameter importances per objective, most important first, by one of Optuna's evaluators.

    Args:
        results: The sweep.
        evaluator: ``fanova`` (default, seeded), ``ped-anova`` or ``mdi`` (mean decrease impurity).

    Raises:
        UsageError: unknown evaluator, or fewer than two complete trials to learn from.
    """
    chosen = _evaluator(evaluator)
    done = len(results.completed())
    if done < 2:
        raise UsageError(
            f"parameter importances need at least 2 complete trials, sweep {results.id} has {done}"
        )
    study = results.study()
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(results.objective_names):
        try:
            scores = optuna.importance.get_param_importances(
                study, evaluator=chosen, target=_target(i) if results.is_multi_objective else None
            )
        except (ValueError, RuntimeError) as exc:
            raise UsageError(f"cannot compute parameter importances of sweep {results.id}: {exc}") from exc
        out[name] = dict(scores)
    return out


def figures(results: SweepResults, top: int = 10, evaluator: str = "fanova") -> list[Figure]:
    """Every plot of the report, in page order. A plot the data cannot support carries a note instead."""
    import optuna.visualization as vis

    study = results.study()
    names = results.objective_names
    multi = results.is_multi_objective
    out: list[Figure] = []
    for i, name in enumerate(names):
        suffix = f" ({name})" if multi else ""
        out.append(_figure(f"history-{i}", f"Optimization history{suffix}", _history(study, i, name, multi)))
    if multi:
        out.append(
            _figure(
                "pareto-front", "Pareto front", lambda: vis.plot_pareto_front(study, target_names=list(names))
            )
        )
    first_target = _target(0) if multi else None
    out.append(
        _figure(
            "parallel-coordinates",
            f"Parallel coordinates ({names[0]})",
            lambda: vis.plot_parallel_coordinate(study, target=first_target, target_name=names[0]),
        )
    )
    if len(results.completed()) >= 2:
        chosen = _evaluator(evaluator)
        out.append(
            _figure(
                "importances",
                f"Parameter importances ({names[0]}, {evaluator})",
                lambda: vis.plot_param_importances(
                    study, evaluator=chosen, target=first_target, target_name=names[0]
                ),
            )
        )
    else:
        out.append(Figure("importances", "Parameter importances", None, "needs at least 2 complete trials"))
    out.append(
        _figure(
            "slices",
            f"Slices ({names[0]})",
            lambda: vis.plot_slice(study, target=first_target, target_name=names[0]),
        )
    )
    out.append(learning_curves(results.best(top), names[0], key="learning-curves"))
    return out


def learning_curves(trials: Sequence[TrialRecord], metric: str, key: str = "learning-curves") -> Figure:
    """One plot of the intermediate values of ``trials`` (one line per trial)."""
    import plotly.graph_objects as go

    drawn = [t for t in trials if t.intermediate_values]
    title = f"Learning curves of the top trials ({metric})" if key == "learning-curves" else "Learning curves"
    if not drawn:
        return Figure(key, title, None, "no trial reported intermediate values")
    fig = go.Figure()
    for t in drawn:
        steps, values = zip(*t.intermediate_values, strict=True)
        fig.add_trace(
            go.Scatter(x=list(steps), y=list(values), mode="lines+markers", name=f"trial {t.number}")
        )
    fig.update_layout(title=title, xaxis_title="step", yaxis_title=metric)
    return Figure(key, title, fig)


def write_report(
    results: SweepResults,
    out_dir: str | Path,
    *,
    top: int = 10,
    png: bool = True,
    evaluator: str = "fanova",
) -> Report:
    """Write ``index.html`` (self-contained: plotly.js inlined) and one PNG per plot into ``out_dir``.

    Raises:
        UsageError: ``png`` is asked and no Chromium browser is installed (the HTML is written first).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(results, top=top, evaluator=evaluator)
    page = out / "index.html"
    page.write_text(_page(results, figs, top), encoding="utf-8")
    pngs: list[Path] = []
    if png:
        drawn = [f for f in figs if f.figure is not None]
        pngs = [out / f"{f.key}.png" for f in drawn]
        write_pngs([f.figure for f in drawn if f.figure is not None], pngs)
    return Report(page, tuple(pngs), tuple(figs))


def write_pngs(figs: Sequence[go.Figure], paths: Sequence[Path]) -> None:
    """Render plotly figures to PNG files in one browser session.

    Raises:
        UsageError: no Chromium browser is installed.
    """
    if not figs:
        return
    browser = chromium_path()
    if browser is None:
        raise UsageError(
            f"PNG export needs a Chromium browser (kaleido drives one), found none: {CHROMIUM_HINT}; "
            "or skip the PNGs (--no-png)"
        )
    import plotly.io as pio

    pio.write_images(list(figs), [str(p) for p in paths], width=1100, height=600)


def chromium_path() -> str | None:
    """The Chromium-based browser kaleido will use, ``None`` if there is none."""
    try:
        from choreographer.browsers.chromium import Chromium
    except ImportError:  # pragma: no cover - choreographer ships with kaleido >= 1
        return shutil.which("chromium") or shutil.which("chromium-browser")
    found: str | None = Chromium.find_browser(skip_local=False)
    return found


def _figure(key: str, title: str, draw: Callable[[], go.Figure]) -> Figure:
    try:
        return Figure(key, title, draw())
    except (ValueError, RuntimeError) as exc:  # too few trials or params for this plot
        return Figure(key, title, None, str(exc))


def _history(study: optuna.Study, i: int, name: str, multi: bool) -> Callable[[], go.Figure]:
    import optuna.visualization as vis

    def draw() -> go.Figure:
        return vis.plot_optimization_history(study, target=_target(i) if multi else None, target_name=name)

    return draw


def _evaluator(name: str) -> optuna.importance.BaseImportanceEvaluator:
    if name == "fanova":
        return optuna.importance.FanovaImportanceEvaluator(seed=0)
    if name == "ped-anova":
        return optuna.importance.PedAnovaImportanceEvaluator()
    if name == "mdi":
        return optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    raise UsageError(f"importance evaluator must be one of {', '.join(EVALUATORS)}, got {name!r}")


def _target(i: int) -> Callable[[FrozenTrial], float]:
    def target(trial: FrozenTrial) -> float:
        return float(trial.values[i])

    return target


def _page(results: SweepResults, figs: Sequence[Figure], top: int) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in results.counts().items() if n)
    goals = ", ".join(f"{n} ({d})" for n, d in zip(results.objective_names, results.directions, strict=True))
    best = results.best(top)
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>".format(
            t.number,
            html.escape(", ".join(f"{v:.6g}" for v in t.values or ())),
            html.escape(f"{t.duration_s:.1f}s" if t.duration_s is not None else ""),
            html.escape(json.dumps(t.config, default=str)),
        )
        for t in best
    )
    sections: list[str] = []
    include_js: bool | str = True  # plotly.js once, inline: the page works offline and can be mailed
    for f in figs:
        if f.figure is None:
            body = f'<p class="note">Not drawn: {html.escape(f.note)}</p>'
        else:
            body = f.figure.to_html(full_html=False, include_plotlyjs=include_js, div_id=f"plot-{f.key}")
            include_js = False
        sections.append(f'<section id="{f.key}"><h2>{html.escape(f.title)}</h2>{body}</section>')
    title = html.escape(f"Sweep {results.name} ({results.id})")
    best_heading = "Pareto front" if results.is_multi_objective else f"Top {len(best)} trials"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;}}table{{border-collapse:collapse;}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;}}.note{{color:#888;}}</style></head>
<body><h1>{title}</h1>
<p>State: {html.escape(results.state)} &middot; method: {html.escape(results.spec.method)} &middot;
objectives: {html.escape(goals)} &middot; trials: {html.escape(counts or "none")} &middot;
created {html.escape(results.info.created_at)}</p>
<h2>{best_heading}</h2>
<table><tr><th>trial</th><th>{html.escape(", ".join(results.objective_names))}</th><th>duration</th>
<th>config</th></tr>{rows}</table>
{"".join(sections)}
</body></html>
"""
