"""A shareable report of a sweep: one self-contained HTML page of plots, and PNG copies of each plot.

The plots come from Optuna's visualization module (optimization history, parallel coordinates,
parameter importances, slices, Pareto front) plus the learning curves of the top trials drawn from the
intermediate values. The page draws them with plotly; the PNGs draw the same plots with matplotlib
(Optuna's ``visualization.matplotlib`` twins), so no browser is needed anywhere.
"""

from __future__ import annotations

import html
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from sweeper.analysis.records import TrialRecord
from sweeper.analysis.results import SweepResults
from sweeper.errors import UsageError
from sweeper.extras import install_hint

if TYPE_CHECKING:
    import matplotlib.figure
    import plotly.graph_objects as go

EVALUATORS = ("fanova", "ped-anova", "mdi")
PNG_SIZE_IN = (11.0, 6.0)  # at PNG_DPI: about 1100 x 600 pixels, the size of the page's plots
PNG_DPI = 100

DrawPng = Callable[[], "matplotlib.figure.Figure"]


@dataclass(frozen=True)
class Figure:
    """One plot of the report: a file-safe key, a title, the plotly figure (``None`` when skipped), and
    how to draw the same plot with matplotlib for its PNG."""

    key: str
    title: str
    figure: go.Figure | None = field(repr=False)
    note: str = ""
    draw_png: DrawPng | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class Report:
    """Where a written report lives; ``png_notes`` say which PNGs asked for were not written, and why."""

    html: Path
    pngs: tuple[Path, ...]
    figures: tuple[Figure, ...]
    png_notes: tuple[str, ...] = ()


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
    import optuna.visualization.matplotlib as mvis

    study = results.study()
    names = results.objective_names
    multi = results.is_multi_objective
    out: list[Figure] = []
    for i, name in enumerate(names):
        suffix = f" ({name})" if multi else ""
        target = _target(i) if multi else None
        out.append(
            _figure(
                f"history-{i}",
                f"Optimization history{suffix}",
                partial(vis.plot_optimization_history, study, target=target, target_name=name),
                partial(mvis.plot_optimization_history, study, target=target, target_name=name),
            )
        )
    if multi:
        out.append(
            _figure(
                "pareto-front",
                "Pareto front",
                partial(vis.plot_pareto_front, study, target_names=list(names)),
                partial(mvis.plot_pareto_front, study, target_names=list(names)),
            )
        )
    first_target, first_name = (_target(0) if multi else None), names[0]
    out.append(
        _figure(
            "parallel-coordinates",
            f"Parallel coordinates ({names[0]})",
            partial(vis.plot_parallel_coordinate, study, target=first_target, target_name=first_name),
            partial(mvis.plot_parallel_coordinate, study, target=first_target, target_name=first_name),
        )
    )
    if len(results.completed()) >= 2:
        chosen = _evaluator(evaluator)
        out.append(
            _figure(
                "importances",
                f"Parameter importances ({names[0]}, {evaluator})",
                partial(
                    vis.plot_param_importances,
                    study,
                    evaluator=chosen,
                    target=first_target,
                    target_name=first_name,
                ),
                partial(
                    mvis.plot_param_importances,
                    study,
                    evaluator=chosen,
                    target=first_target,
                    target_name=first_name,
                ),
            )
        )
    else:
        out.append(Figure("importances", "Parameter importances", None, "needs at least 2 complete trials"))
    out.append(
        _figure(
            "slices",
            f"Slices ({names[0]})",
            partial(vis.plot_slice, study, target=first_target, target_name=first_name),
            partial(mvis.plot_slice, study, target=first_target, target_name=first_name),
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

    def draw_png() -> matplotlib.figure.Figure:
        from matplotlib import colormaps
        from matplotlib.figure import Figure as MplFigure

        canvas = MplFigure()
        ax = canvas.subplots()
        tab10 = colormaps["tab10"]
        ax.set_prop_cycle(color=[tab10(i) for i in range(10)])  # ten trials, ten colours
        for t in drawn:
            steps, values = zip(*t.intermediate_values, strict=True)
            ax.plot(steps, values, marker="o", markersize=3, label=f"trial {t.number}")
        ax.set(title=title, xlabel="step", ylabel=metric)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
        return canvas

    return Figure(key, title, fig, draw_png=draw_png)


def write_report(
    results: SweepResults,
    out_dir: str | Path,
    *,
    top: int = 10,
    png: bool = True,
    evaluator: str = "fanova",
) -> Report:
    """Write ``index.html`` (self-contained: plotly.js inlined) and, with ``png``, one PNG per plot.

    The PNGs are drawn with matplotlib; without it they are skipped and ``Report.png_notes`` says how
    to get them (as it says why, should one plot fail to draw). The HTML never depends on them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = figures(results, top=top, evaluator=evaluator)
    page = out / "index.html"
    page.write_text(_page(results, figs, top), encoding="utf-8")
    if not png:
        return Report(page, (), tuple(figs))
    note = png_unavailable()
    if note:
        return Report(page, (), tuple(figs), png_notes=(f"no PNGs written: {note}",))
    pngs: list[Path] = []
    notes: list[str] = []
    for f in figs:
        if f.draw_png is None:
            continue
        path = out / f"{f.key}.png"
        try:
            write_png(f.draw_png, path)
        except (ValueError, RuntimeError) as exc:  # the HTML has this plot; say why the PNG does not
            notes.append(f"no PNG of {f.key}: {exc}")
            continue
        pngs.append(path)
    return Report(page, tuple(pngs), tuple(figs), tuple(notes))


def png_unavailable() -> str:
    """Why PNGs cannot be drawn here (matplotlib missing), or ``""`` when they can."""
    from importlib.util import find_spec

    if find_spec("matplotlib") is None:
        return f"PNGs need matplotlib, which is not installed: {install_hint('dashboard')}"
    return ""


def write_png(draw: DrawPng, path: Path) -> None:
    """Draw one plot with matplotlib (no display, no browser) and save it as a PNG."""
    os.environ.setdefault("MPLBACKEND", "Agg")  # before pyplot loads: never open a window
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        # Optuna marks its matplotlib plots experimental; that concerns Optuna, not our user.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        canvas = draw()
    try:
        width, height = canvas.get_size_inches()
        canvas.set_size_inches(max(width, PNG_SIZE_IN[0]), max(height, PNG_SIZE_IN[1]))
        canvas.savefig(path, dpi=PNG_DPI, bbox_inches="tight", pad_inches=0.2)  # no label cut off
    finally:
        plt.close(canvas)  # optuna draws through pyplot; a notebook must not show it again


def _figure(key: str, title: str, draw: Callable[[], go.Figure], draw_axes: Callable[[], Any]) -> Figure:
    try:
        figure = draw()
    except (ValueError, RuntimeError) as exc:  # too few trials or params for this plot
        return Figure(key, title, None, str(exc))
    return Figure(key, title, figure, draw_png=partial(_figure_of, draw_axes))


def _figure_of(draw_axes: Callable[[], Any]) -> matplotlib.figure.Figure:
    """The matplotlib figure behind what Optuna's matplotlib plots return (Axes, or an array of them)."""
    import numpy as np

    drawn = draw_axes()
    axes = drawn.flat[0] if isinstance(drawn, np.ndarray) else drawn
    figure: matplotlib.figure.Figure = axes.get_figure()
    return figure


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
    priors = results.priors()
    if priors:  # earlier results a warm start loaded: in the plots (the sampler learned from them)
        counts += f"; {len(priors)} priors (trials {priors[0].number}..{priors[-1].number}, earlier results)"
    goals = ", ".join(f"{n} ({d})" for n, d in zip(results.objective_names, results.directions, strict=True))
    best = results.best(top)
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>".format(
            f"{t.number} (prior)" if t.is_prior else t.number,
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
