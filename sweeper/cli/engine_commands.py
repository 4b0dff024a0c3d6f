"""`sweeper` commands of the engine layer: submit, agent, run, and the sweep state changes."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import click

from sweeper.cli import main
from sweeper.storage.urls import ENV_VAR

_STORAGE_HELP = f"Storage URL (default: ${ENV_VAR}, else the journal file under ./.sweeper/)."


def _storage_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--storage", "storage", metavar="URL", default=None, help=_STORAGE_HELP)(func)


def _agent_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--count", type=click.IntRange(min=1), default=None, help="Run at most N trials here."),
        click.option(
            "--max-concurrent", type=click.IntRange(min=1), default=None, help="At most K trials at once."
        ),
        click.option(
            "--ray-address",
            metavar="ADDR",
            default=None,
            help="Ray cluster to use: 'auto' or host:port (default: a local Ray).",
        ),
        click.option(
            "--executor",
            type=click.Choice(["ray", "local"]),
            default="ray",
            show_default=True,
            help="Ray tasks, or one trial at a time in this process (debuggers work).",
        ),
        click.option(
            "--trainer",
            metavar="MODULE:FUNCTION",
            default=None,
            help="Trainer function (overrides the spec).",
        ),
        click.option("--json", "json_lines", is_flag=True, help="One JSON object per event on stdout."),
        click.option(
            "--lease-grace",
            "lease_grace_s",
            type=click.FloatRange(min=0, min_open=True),
            default=60.0,
            show_default=True,
            metavar="SECONDS",
            help="A trial whose agent renewed no lease for this long is failed and re-queued.",
        ),
        click.option(
            "--lease-renew",
            "lease_renew_s",
            type=click.FloatRange(min=0, min_open=True),
            default=10.0,
            show_default=True,
            metavar="SECONDS",
            help="How often this agent renews the leases of its running trials.",
        ),
        click.option(
            "--max-fast-failures",
            "max_fast_failures",
            type=click.IntRange(min=0),
            default=5,
            show_default=True,
            metavar="N",
            help="Back off, then stop, when N trials in a row fail within 10 s of starting (0: never).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


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


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False))
@_storage_option
@click.option("--name", default=None, help="Name of the sweep (default: the spec's name, else its id).")
def submit(spec_path: str, storage: str | None, name: str | None) -> None:
    """Validate SPEC and create its sweep; prints the sweep id as the last line."""
    from sweeper.spec.reader import load_spec
    from sweeper.storage.sweeps import create_sweep
    from sweeper.storage.urls import mask_url, open_storage, resolve_url

    _quiet_optuna()
    spec = load_spec(spec_path)
    url = resolve_url(storage or spec.sweeper.storage)
    info = create_sweep(open_storage(url), spec, name=name)
    click.echo(f"created sweep {info.name!r} in {mask_url(url)}", err=True)
    click.echo(info.id)


@main.command()
@click.argument("sweep")
@_storage_option
@_agent_options
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
@_storage_option
@click.option("--name", default=None, help="Name of the sweep (default: the spec's name, else its id).")
@_agent_options
def run(spec_path: str, storage: str | None, name: str | None, **options: Any) -> None:
    """Submit SPEC and run an agent on it: `submit` then `agent` in one command."""
    from sweeper.spec.reader import load_spec
    from sweeper.storage.sweeps import create_sweep
    from sweeper.storage.urls import open_storage, resolve_url

    _quiet_optuna()
    spec = load_spec(spec_path)
    _check_trainer(options.get("trainer") or spec.sweeper.trainer)  # before a sweep exists
    url = resolve_url(storage or spec.sweeper.storage)
    info = create_sweep(open_storage(url), spec, name=name)
    click.echo(f"created sweep {info.id} ({info.name})", err=True)
    _run_agent(info.id, url, **options)


def _check_trainer(path: str | None) -> None:
    import os
    import sys

    from sweeper.worker.trial import load_trainer

    if path is None:
        return
    if os.getcwd() not in sys.path:  # the project's modules, as the agent and workers see them
        sys.path.insert(0, os.getcwd())
    load_trainer(path)


def _state_command(name: str, state: str, doc: str) -> None:
    @main.command(name=name, help=doc)
    @click.argument("sweep")
    @_storage_option
    def command(sweep: str, storage: str | None) -> None:
        from sweeper.storage.sweeps import set_state
        from sweeper.storage.urls import open_storage

        info = set_state(open_storage(storage), sweep, state)
        click.echo(f"sweep {info.id} is {info.state}")


_state_command("pause", "paused", "Pause SWEEP: agents start no new trials until it is resumed.")
_state_command("resume", "running", "Resume a paused SWEEP.")
_state_command("stop", "finished", "Stop SWEEP: no new trials; running ones finish, then it is finished.")
_state_command("cancel", "cancelled", "Cancel SWEEP: agents kill its running trials and exit.")

__all__ = ["agent", "main", "run", "submit"]
