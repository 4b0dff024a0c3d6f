"""`sweeper` commands of the spec layer: ``validate`` and ``preview``."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from sweeper.cli.main import main
from sweeper.errors import SpecError, TrainerError, UsageError
from sweeper.spec import server_keys
from sweeper.spec.loader import read_yaml
from sweeper.spec.model import SweepSpec
from sweeper.spec.reader import load_spec
from sweeper.trackers import tracker_problems

DEFAULT_DRAWS = 10


def _note_ignored(keys: Sequence[str], path: str) -> None:
    if keys:
        click.echo(f"{path}: note: ignoring W&B server keys: {', '.join(keys)}", err=True)


def _ignored_in_file(path: str) -> tuple[str, ...]:
    """The W&B server keys of a spec file that did not validate (if it parses at all)."""
    try:
        data = read_yaml(path)
    except SpecError:
        return ()
    return server_keys(data)


def project_problems(spec: SweepSpec, project: Path) -> tuple[list[str], list[str]]:
    """What ``sweeper run`` would find wrong with the spec in ``project`` (the directory an agent
    starts in): ``(errors, notes)``, errors as ``dotted.path: message``, notes as ``note: message``.

    The trainer must import from the project directory (on ``sys.path``, as the agent puts it),
    a program its command runs must be there, the storage URL must have a known form (it is
    not opened: validating creates nothing), and a warm start's files must be there.
    """
    from sweeper.storage.urls import resolve_url
    from sweeper.worker.program_args import DEFAULT_COMMAND
    from sweeper.worker.trial import import_trainer

    errors: list[str] = []
    notes: list[str] = []
    trainer = spec.sweeper.trainer
    if trainer is not None:
        try:
            import_trainer(trainer, project)
        except TrainerError as exc:
            errors.append(f"sweeper.trainer: {exc} (the project directory {project} is on the path)")
    elif spec.program is None and spec.command is None:
        notes.append(
            "note: names no trainer (sweeper.trainer, or program and command): "
            "`sweeper run` and `sweeper agent` will need --trainer MODULE:FUNCTION"
        )
    command = spec.command if spec.command is not None else DEFAULT_COMMAND
    runs_program = trainer is None and (spec.program is not None or spec.command is not None)
    if runs_program and "${program}" in command:
        if spec.program is None:
            errors.append("command: uses ${program} but the spec has no program")
        elif not (project / spec.program).is_file():
            errors.append(f"program: {spec.program!r} not found in {project}, where the agent runs it")
    if spec.sweeper.storage is not None:
        try:
            resolve_url(spec.sweeper.storage)
        except UsageError as exc:
            errors.append(f"sweeper.storage: {exc}")
    errors.extend(_warm_start_problems(spec, project))
    return errors, notes


def _warm_start_problems(spec: SweepSpec, project: Path) -> list[str]:
    """A warm start's files and folders must be there (sweeps and MLflow are read at submit)."""
    from sweeper.analysis.prior_sources import existing
    from sweeper.analysis.priors import search_roots

    errors = []
    for i, source in enumerate(spec.sweeper.warm_start):
        if source.kind in ("export", "wandb"):
            try:
                existing(search_roots(spec, project), source.target, source.kind)
            except UsageError as exc:
                errors.append(f"sweeper.warm_start.{i}.{source.kind}: {exc}")
    return errors


@main.command("validate")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
def validate(specs: tuple[str, ...]) -> None:
    """Check sweep spec files; print every located error.

    Exits 0 when every SPEC is valid, 2 when any is not. Each error reads
    ``FILE: dotted.path: what must hold, got VALUE``. Besides the spec itself, it checks what
    `sweeper run` would from this directory: the trainer imports, the program is here, the
    trackers take their options, the storage URL has a known form.
    """
    from sweeper.search.strategy import plan_search  # imports Optuna: only once a command runs

    project = Path(os.getcwd())
    invalid = 0
    for path in specs:
        try:
            spec = load_spec(path)
        except SpecError as exc:
            invalid += 1
            for issue in exc.issues:
                click.echo(f"error: {issue}", err=True)
            _note_ignored(_ignored_in_file(path), path)
            continue
        tracker_errors, tracker_notes = tracker_problems(spec.sweeper.trackers)
        errors, notes = project_problems(spec, project)
        errors[:0] = [f"sweeper.trackers: {error}" for error in tracker_errors]
        notes[:0] = [f"sweeper.trackers: note: {note}" for note in tracker_notes]
        for note in notes:
            click.echo(f"{path}: {note}", err=True)
        if errors:
            invalid += 1
            for error in errors:
                click.echo(f"error: {path}: {error}", err=True)
            continue
        try:
            # A custom scheduler's file is run, its functions called and its search space tried.
            plan = plan_search(spec, Path.cwd())
        except SpecError as exc:
            invalid += 1
            for issue in exc.issues:
                click.echo(f"error: {issue}", err=True)
            continue
        space = spec.space
        if spec.defines_space_by_run:
            summary = f"{spec.method}, searched parameters defined by run"
        else:
            summary = f"{spec.method}, {len(space.names)} searched parameter(s)"
        conditional = sum(1 for p in spec.parameters if p.when)
        if conditional:
            summary += f" ({conditional} conditional)"
        if spec.method == "grid":
            summary += f", {space.grid_size()} grid point(s)"
        elif spec.distinct:
            summary += f", a finite space of {space.finite_size()} config(s), each run at most once"
        if plan.scheduler is not None:
            summary += f"; {plan.scheduler.describe()}"
        click.echo(f"{path}: ok ({summary})")
        _note_ignored(spec.ignored_keys, path)
    if invalid:
        click.echo(f"{invalid} of {len(specs)} spec(s) invalid", err=True)
        sys.exit(2)


@main.command("preview")
@click.argument("spec_path", metavar="SPEC")
@click.option(
    "-n",
    "--count",
    type=click.IntRange(min=0),
    default=None,
    help=f"How many configs to print (grid: default all; random/bayes: default {DEFAULT_DRAWS}).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed of the draws (default: the spec's sweeper.seed, else random).",
)
def preview(spec_path: str, count: int | None, seed: int | None) -> None:
    """Print the configs the trainer would receive, one JSON object per line.

    For a grid, the points in sweep order (the total count goes to stderr). For random and bayes,
    draws from the prior law; with the same seed, draw i is what random search gives trial i (on a
    finite space, unless an earlier trial holds that config). Inactive conditional parameters are
    absent, as in the trainer's config. For method custom, the first configs the scheduler's own
    sampler proposes (conditional parameters included), before any result; its study carries the seed.
    """
    from sweeper.search.custom import draw_configs
    from sweeper.search.samplers import draw_params
    from sweeper.search.strategy import plan_search

    spec = load_spec(spec_path)
    _note_ignored(spec.ignored_keys, spec_path)
    space = spec.space
    configs: Iterable[Mapping[str, Any]]
    plan = plan_search(spec, Path.cwd())
    if plan.scheduler is not None:
        if seed is not None:
            raise UsageError(
                "--seed does not apply to method custom: the scheduler's sampler is seeded by its study "
                "(scheduler.optimizer) or by sweeper.seed"
            )
        shown = DEFAULT_DRAWS if count is None else count
        sampler = type(plan.scheduler.sampler).__name__
        click.echo(f"{spec.method}: {shown} config(s) proposed by the scheduler's {sampler}", err=True)
        configs = draw_configs(plan.scheduler, spec, shown)
    elif spec.method == "grid":
        total = space.grid_size()
        shown = total if count is None else min(count, total)
        click.echo(f"grid: {total} point(s), showing {shown}", err=True)
        points = itertools.islice(space.iter_grid(), shown)
        configs = (space.to_config(point) for point in points)
    else:
        seed = seed if seed is not None else spec.sweeper.seed
        seed = seed if seed is not None else secrets.randbelow(2**31)
        shown = DEFAULT_DRAWS if count is None else count
        click.echo(f"{spec.method}: {shown} draw(s) from the prior, seed {seed}", err=True)
        configs = (space.to_config(draw_params(space, seed, number)) for number in range(shown))
    for config in configs:
        # Constants may hold YAML-only types (dates); show those as text rather than failing.
        click.echo(json.dumps(config, default=str))


__all__ = ["main", "preview", "validate"]
