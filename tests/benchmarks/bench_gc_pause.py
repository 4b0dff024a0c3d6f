"""The agent's garbage-collection pauses: how long a collection stalls its decisions, heap frozen or not.

A collection holds the GIL: while it walks the heap, no report is decided and no trial started. An
agent runs in process (``--executor local``, SQLite) over a sweep whose trials report every step to
W&B's hyperband rule, in a process holding a notebook's worth of objects besides its own (the
``heap`` figure: a million small containers, about what a test session holds by its end) and in
one holding only what the agent itself loads. Every collection in the agent's process is timed
(``gc.callbacks``). Each case runs twice in the same run: as the agent runs (the heap it found frozen,
:func:`sweeper.heap.frozen_heap`) and without the freeze (the peer), alternated.
"""

from __future__ import annotations

import contextlib
import gc
import time
from pathlib import Path
from typing import Any

import harness
import optuna
from harness import Figure

import sweeper
from sweeper.engine import agent as agent_module
from sweeper.engine.loop import FillLoop
from sweeper.heap import frozen_heap

SECTION = "2. Pruning latency"


def trainer(config: dict[str, Any], trial: Any) -> float:
    loss = 1.0
    for step in range(1, config["steps"] + 1):
        loss = config["x"] / step
        trial.log({"loss": loss}, step=step)
        time.sleep(0.001)
    return loss


def run_sweep(
    root: Path, tag: str, trials: int, steps: int, frozen: bool
) -> tuple[list[tuple[int, float]], float]:
    """(generation, seconds) of every collection in this process while the agent's loop ran (where it
    decides on reports and starts trials; its set-up before is not counted), and the seconds of one
    full collection made as the loop ends (what one costs the agent when it comes: whether one comes
    during a run depends on how much the run keeps, Python's rule being a quarter of the heap)."""
    url = f"sqlite:///{root / tag}.db"
    spec = {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": list(range(1, trials + 1))}, "steps": {"value": steps}},
        "early_terminate": {"type": "hyperband", "min_iter": 3, "eta": 3},
    }
    sweep_id = sweeper.sweep(spec, storage=url)
    pauses: list[tuple[int, float]] = []
    began = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], time.perf_counter() - began[0]))

    run = FillLoop.run

    forced = [0.0]

    def timed_run(self: FillLoop) -> Any:
        gc.callbacks.append(timed)
        try:
            return run(self)
        finally:
            gc.callbacks.remove(timed)
            t0 = time.perf_counter()
            gc.collect()
            forced[0] = time.perf_counter() - t0

    agent_module.frozen_heap = frozen_heap if frozen else contextlib.nullcontext  # type: ignore[assignment]
    FillLoop.run = timed_run  # type: ignore[method-assign]
    try:
        sweeper.agent(sweep_id, function=trainer, storage=url, executor="local")
    finally:
        FillLoop.run = run  # type: ignore[method-assign]
        agent_module.frozen_heap = frozen_heap  # type: ignore[assignment]
    return pauses, forced[0]


def summary(pauses: list[tuple[int, float]]) -> str:
    full = [s for gen, s in pauses if gen == 2]
    every = sum(s for _, s in pauses)
    return (
        f"longest {longest(pauses) * 1000:.0f} ms, {len(full)} full collection(s) "
        f"({sum(full) * 1000:.0f} ms), all {len(pauses)} collections {every * 1000:.0f} ms"
    )


def longest(pauses: list[tuple[int, float]]) -> float:
    return max((s for _, s in pauses), default=0.0)


def main() -> None:
    args = harness.parse_args(__doc__.splitlines()[0])
    trials, steps, heap_size = (30, 10, 100_000) if args.quick else (300, 20, 1_000_000)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    root = harness.scratch_dir("bench-gc-")
    run_sweep(root, "warm-up", 3, 3, True)  # the agent's imports, so both cases start with them done
    figures = []
    notebook: list[Any] = []
    for case in ("the agent's own heap", f"{heap_size:,} objects of the caller's besides"):
        if notebook == [] and case != "the agent's own heap":
            notebook = [{"row": [i], "key": (i, str(i))} for i in range(heap_size // 3)]
        gc.collect()
        objects = len(gc.get_objects())
        runs: dict[bool, list[list[tuple[int, float]]]] = {True: [], False: []}
        full: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(2):
            for frozen in (False, True):
                tag = f"{len(notebook)}-{frozen}-{round_}"
                pauses, forced = run_sweep(root, tag, trials, steps, frozen)
                runs[frozen].append(pauses)
                full[frozen].append(forced)
        worst = {frozen: max(longest(p) for p in each) for frozen, each in runs.items()}
        figures.append(
            Figure(
                SECTION,
                f"longest GC pause in the agent's loop, {case} ({objects:,} tracked objects at its start)",
                f"{worst[True] * 1000:.0f} ms",
                "documented",
                None,
                f"frozen (as it runs): {'; '.join(summary(p) for p in runs[True])}. Not frozen (the peer, "
                f"same run): {'; '.join(summary(p) for p in runs[False])}; {trials} trials x {steps} reports",
            )
        )
        figures.append(
            Figure(
                SECTION,
                f"a full collection in the agent's loop, {case}",
                f"{max(full[True]) * 1000:.0f} ms",
                "documented",
                None,
                f"frozen: {', '.join(f'{s * 1000:.0f}' for s in full[True])} ms; not frozen (the peer, same "
                f"run): {', '.join(f'{s * 1000:.0f}' for s in full[False])} ms; ratio "
                f"{min(full[False]) / max(*full[True], 1e-6):.1f}x (slowest frozen to fastest peer)",
            )
        )
    del notebook
    harness.emit(figures, args.json)


if __name__ == "__main__":
    main()
