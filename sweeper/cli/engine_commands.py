"""`sweeper` commands that run or steer agents: submit, agent, run, repeat, and the sweep state changes."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from sweeper.cli.format import (
    add_row,
    cell,
    duration_text,
    echo_json,
    make_console,
    num_text,
    safe_table,
    state_text,
    value_text,
)
from sweeper.cli.main import main
from sweeper.cli.options import agent_options, json_option, storage_option, warm_start_option
from sweeper.plain import printable

if TYPE_CHECKING:
    from sweeper.spec.model import SweepSpec
    from sweeper.storage.sweeps import SweepInfo


def _run_agent(sweep_id: str, storage: Any, **options: Any) -> None:
    from sweeper.engine.agent import Agent
    from sweeper.engine.progress import make_progress

    _quiet_optuna()
    progress = make_progress(json_lines=options.pop("json_lines"))
    from sweeper.engine.flapping import FlapPolicy

    options["flap_policy"] = FlapPolicy(streak=options.pop("max_fast_failures"))
    agent = Agent(sweep_id, storage=storage, progress=progress, **options)
    # `kill` / a scheduler's SIGTERM: leave like a second Ctrl-C, failing and requeueing the running trials.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # A first Ctrl-C starts nothing new and waits; a second one cancels (KeyboardInterrupt).
    previous_int = signal.signal(signal.SIGINT, lambda signum, frame: _drain_on_ctrl_c(agent))
    try:
        agent.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _drain_on_ctrl_c(agent: Any) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    click.echo(
        "Ctrl-C: starting no new trials, waiting for the running ones (Ctrl-C again cancels them)",
        err=True,
    )
    agent.drain()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    from sweeper.errors import AgentExit

    raise AgentExit(128 + signum)


def _quiet_optuna() -> None:
    # Optuna's per-trial INFO lines would drown the progress view; warnings still show.
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def describe_size(spec: SweepSpec) -> str:
    """How many trials the sweep runs, in words (retries aside).

    >>> from sweeper.spec.reader import load_spec
    >>> describe_size(load_spec({"method": "grid", "parameters": {"a": {"values": list(range(1000))}}}))
    'a grid of 1,000 points'
    >>> describe_size(load_spec({"method": "random", "run_cap": 20,
    ...     "parameters": {"a": {"min": 0.0, "max": 1.0}}}))
    '20 trials (run_cap)'
    >>> describe_size(load_spec({"method": "random", "run_cap": 20, "parameters": {"a": {"values": [1, 2]}}}))
    '2 trials: every config of its finite space once'
    """
    budget = spec.budget
    if spec.method == "grid":
        size = spec.space.grid_size()
        points = f"a grid of {size:,} point{'s' if size != 1 else ''}"
        return points if budget == size else f"{points}, the first {budget:,} (run_cap)"
    if budget is None:
        return "no trial limit (run_cap, --count or cancel ends it)"
    if spec.distinct and (spec.run_cap is None or budget < spec.run_cap):
        return f"{budget:,} trials: every config of its finite space once"
    return f"{budget:,} trial{'s' if budget != 1 else ''} (run_cap)"


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@storage_option
@click.option("--name", default=None, help="Name of the sweep (default: the spec's name, else its id).")
@warm_start_option
def submit(spec_path: str, storage: str | None, name: str | None, warm_start: tuple[str, ...]) -> None:
    """Validate SPEC and create its sweep; prints the sweep id as the last line.

    With a warm start (the spec's sweeper.warm_start, --warm-start), the earlier results are read
    and checked against the space now; a line per source says how many became priors and why
    the others did not.
    """
    from sweeper.storage.urls import mask_url

    _quiet_optuna()
    spec, url = _spec_and_url(spec_path, storage)
    info = _create(spec, url, name, warm_start)
    click.echo(f"created sweep {info.name!r} in {mask_url(url)}: {describe_size(spec)}", err=True)
    click.echo(info.id)


@main.command()
@click.argument("sweep")
@storage_option
@agent_options
@click.option(
    "--trial",
    "trials",
    type=click.IntRange(min=0),
    multiple=True,
    metavar="N",
    help="Run only waiting trial N (repeatable), and the retries of those that fail; leave the rest queued.",
)
def agent(sweep: str, storage: str | None, trials: tuple[int, ...], **options: Any) -> None:
    """Run trials of SWEEP until it is done (or --count trials ran here)."""
    _run_agent(sweep, storage, trials=list(trials) or None, **options)


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@storage_option
@click.option("--name", default=None, help="Name of the sweep (default: the spec's name, else its id).")
@warm_start_option
@agent_options
def run(
    spec_path: str, storage: str | None, name: str | None, warm_start: tuple[str, ...], **options: Any
) -> None:
    """Submit SPEC and run an agent on it: `submit` then `agent` in one command."""
    import contextlib
    from pathlib import Path

    from sweeper.engine.ray_start import RayStart
    from sweeper.engine.report_channel import PORTS_ENV, allowed_ports
    from sweeper.engine.trainer_check import check_trainer_module
    from sweeper.worker.trial import import_trainer

    spec, url = _spec_and_url(spec_path, storage)
    trainer = options.get("trainer") or spec.sweeper.trainer
    project = Path.cwd().resolve()  # the agent's default workdir
    check_trainer_module(trainer, project)  # a misspelt trainer fails before Ray starts
    if options["executor"] == "ray":
        allowed_ports(os.environ.get(PORTS_ENV))  # a malformed setting fails before the sweep exists
    # Ray starts while the trainer is imported, the sweep created and the agent set up (a sweep
    # naming no trainer at all fails in the agent, before Ray starts).
    runs = trainer is not None or spec.program is not None or spec.command is not None
    start = RayStart.begin(options["ray_address"], project) if options["executor"] == "ray" and runs else None
    # Optuna is imported only now, while Ray starts (nothing above imports it: a test checks).
    _quiet_optuna()
    with start or contextlib.nullcontext():
        if trainer is not None:
            import_trainer(trainer, project)  # before a sweep exists
        info = _create(spec, url, name, warm_start)
        click.echo(f"created sweep {info.id} ({printable(info.name)}): {describe_size(spec)}", err=True)
        _run_agent(info.id, url, ray_start=start, **options)


def _spec_and_url(spec_path: str, storage: str | None) -> tuple[SweepSpec, str]:
    from sweeper.spec.reader import load_spec
    from sweeper.storage.urls import resolve_url

    spec = load_spec(spec_path)
    return spec, resolve_url(storage or spec.sweeper.storage)


def _create(spec: SweepSpec, url: str, name: str | None, warm_start: tuple[str, ...]) -> SweepInfo:
    """The new sweep, its custom scheduler's file run first and its priors loaded (see ``api.create``)."""
    from sweeper import api
    from sweeper.storage.urls import open_storage

    return api.create(spec, open_storage(url), name, warm_start=list(warm_start))


def _state_command(name: str, state: str, doc: str) -> None:
    @main.command(name=name, help=doc)
    @click.argument("sweep")
    @storage_option
    def command(sweep: str, storage: str | None) -> None:
        from sweeper.storage.sweeps import set_state
        from sweeper.storage.urls import open_storage

        info = set_state(open_storage(storage), sweep, state)
        click.echo(f"sweep {info.id} is {info.state}")


_state_command("pause", "paused", "Pause SWEEP: agents start no new trials until it is resumed.")
_state_command("resume", "running", "Resume a paused SWEEP.")
_state_command("stop", "finished", "Stop SWEEP: no new trials; running ones finish, then it is finished.")
_state_command("cancel", "cancelled", "Cancel SWEEP: agents kill its running trials and exit.")


@main.command("extend")
@click.argument("sweep")
@storage_option
@click.option(
    "--run-cap", type=click.IntRange(min=1), default=None, help="Its new run_cap (larger than its own)."
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=None,
    help="Or this many trials more than its budget (without one: than it has run).",
)
@click.option(
    "--add",
    "adds",
    multiple=True,
    metavar="PARAM=VALUE",
    help="A new value for a `values` parameter, read as YAML (0.001, adamw, [64, 64]); repeatable.",
)
def extend_command(
    sweep: str, storage: str | None, run_cap: int | None, trials: int | None, adds: tuple[str, ...]
) -> None:
    """Give SWEEP (finished, stopped or running) more budget or grid values; only new points run.

    The sampler goes on from every trial the sweep has; racing agents still run each new point once.
    `sweeper status` lists the sweep's extensions.
    """
    from sweeper.spec.extension import Extension
    from sweeper.storage.sweeps import extend_sweep
    from sweeper.storage.urls import open_storage

    done = extend_sweep(open_storage(storage), sweep, Extension(run_cap, trials, _parse_adds(adds)))
    info = done.info
    before = "no limit" if done.budget_before is None else f"{done.budget_before:,}"
    after = "no limit" if done.budget_after is None else f"{done.budget_after:,}"
    queued = f"; {done.new_points:,} new grid point(s) queued" if done.new_points else ""
    click.echo(f"sweep {info.id} extended: budget {before} -> {after} trials{queued}; it is {info.state}")


def _parse_adds(adds: tuple[str, ...]) -> dict[str, list[Any]]:
    """``--add lr=0.001 --add lr=0.0001`` as ``{"lr": [0.001, 0.0001]}``, each value read as YAML."""
    import yaml

    from sweeper.errors import UsageError

    values: dict[str, list[Any]] = {}
    for add in adds:
        name, sep, text = add.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--add {add!r}: expected PARAM=VALUE, for example --add lr=0.001")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"--add {add!r}: the value is not YAML ({exc})") from None
        values.setdefault(name.strip(), []).append(value)
    return values


@main.command("repeat")
@click.argument("sweep")
@click.option(
    "--trial", "trial_number", type=click.IntRange(min=0), required=True, help="The trial to repeat."
)
@click.option(
    "--seeds",
    type=click.IntRange(min=0),
    required=True,
    help="How many seeds to run (the original's seed + 1, + 2, ...); 0 only summarizes past repeats.",
)
@click.option(
    "--executor",
    type=click.Choice(["ray", "local"]),
    default="ray",
    show_default=True,
    help="Ray tasks, or one trial at a time in this process.",
)
@click.option("--trainer", metavar="MODULE:FUNCTION", default=None, help="Trainer (overrides the spec).")
@click.option("--max-concurrent", type=click.IntRange(min=1), default=None, help="At most K repeats at once.")
@click.option("--ray-address", metavar="ADDR", default=None, help="Ray cluster to use.")
@storage_option
@json_option
def repeat_command(
    *,
    sweep: str,
    trial_number: int,
    seeds: int,
    executor: str,
    trainer: str | None,
    max_concurrent: int | None,
    ray_address: str | None,
    storage: str | None,
    as_json: bool,
) -> None:
    """Re-run trial N of SWEEP with K other seeds; show mean, std, range and a 95% t-interval.

    Each repeat is a new trial marked as a repeat of N, with N's params and the config's `seed`
    key overridden, so function and program trainers alike get the new seed. Only the repeats
    run: other queued trials stay queued, and a finished sweep stays finished.
    """
    from sweeper import api
    from sweeper.analysis import repeats
    from sweeper.analysis import results as res

    if seeds == 0:
        summary = repeats.summarize(res.load(sweep, storage), trial_number)
    else:
        summary = api.repeat(
            sweep,
            trial_number,
            seeds,
            storage=storage,
            trainer=trainer,
            executor=executor,
            max_concurrent=max_concurrent,
            ray_address=ray_address,
        )
    if as_json:
        echo_json(summary.to_dict())
        return
    console = make_console()
    table = safe_table(f"Trial {trial_number} of {summary.sweep_id} and its repeats")
    for column in ("trial", "seed", "state", summary.metric, "duration"):
        table.add_column(cell(column), justify="right")
    for t in (summary.original, *summary.repeats):
        add_row(
            table,
            str(t.number),
            value_text(t.config.get("seed")),
            state_text(t.state),
            num_text(t.value),
            duration_text(t.duration_s),
        )
    console.print(table)
    stats = summary.stats
    if stats is None:
        console.print("No repeat completed.")
        return
    line = (
        f"{summary.metric} over {stats.n} repeats: mean {num_text(stats.mean)}, std {num_text(stats.std)}, "
        f"min {num_text(stats.min)}, max {num_text(stats.max)}"
    )
    if stats.ci_low is not None and stats.ci_high is not None:
        low, high = num_text(stats.ci_low), num_text(stats.ci_high)
        line += f", {stats.confidence:.0%} t-interval of the mean [{low}, {high}]"
    console.print(cell(line))
    inside = stats.contains(summary.original.value) if summary.original.value is not None else None
    if inside is not None:
        verdict = "inside" if inside else "outside"
        value = num_text(summary.original.value)
        console.print(cell(f"Trial {trial_number}'s {summary.metric} {value} lies {verdict} it."))


__all__ = ["agent", "main", "repeat_command", "run", "submit"]
