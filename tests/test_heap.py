"""The agent's heap is frozen while it runs, and bulk reads run without collections."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sweeper
from sweeper.engine.loop import FillLoop
from sweeper.heap import collection_paused, frozen_heap
from sweeper.worker import forked


@pytest.fixture(autouse=True)
def _nothing_frozen() -> Iterator[None]:
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()  # whatever a failed test left frozen


class Node:
    """A cycle's member: only a collection frees it."""

    def __init__(self) -> None:
        self.me = self


def two_trial_sweep(project: Path) -> tuple[str, str]:
    """(storage URL, sweep id) of a grid of two trials."""
    url = f"sqlite:///{project / 's.db'}"
    spec = {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2]}}}
    return url, sweeper.sweep(spec, storage=url)


def test_the_agent_decides_and_starts_trials_on_a_frozen_heap_and_unfreezes_it_after(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sweep_id = two_trial_sweep(project)
    frozen_in_loop: list[int] = []
    run = FillLoop.run

    def watched(self: FillLoop) -> Any:
        frozen_in_loop.append(gc.get_freeze_count())
        return run(self)

    monkeypatch.setattr(FillLoop, "run", watched)
    gc.collect()  # earlier tests' garbage is not held: a collection in the set-up frees it
    before = len(gc.get_objects())
    summary = sweeper.agent(sweep_id, function=lambda config, trial: 0.5, storage=url, executor="local")

    assert summary.complete == 2
    # Everything the process held before the agent, and what its set-up loaded, was frozen.
    assert frozen_in_loop and frozen_in_loop[0] >= before
    assert gc.get_freeze_count() == 0


def test_a_trial_forked_from_the_agent_itself_leaves_the_heap_frozen(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sweep_id = two_trial_sweep(project)
    lock = threading.Lock()  # the trainer closes over it: it cannot be pickled for the zygote
    monkeypatch.setattr(forked, "_warned_fork", False)  # its once-a-process warning stays for others

    def train(config: dict[str, Any], trial: Any) -> float:
        with lock:
            return 0.5

    frozen_after: list[int] = []
    run = FillLoop.run

    def watched(self: FillLoop) -> Any:
        try:
            return run(self)
        finally:
            frozen_after.append(gc.get_freeze_count())

    monkeypatch.setattr(FillLoop, "run", watched)
    summary = sweeper.agent(sweep_id, function=train, storage=url, executor="local")  # warns: forked

    assert summary.complete == 2
    assert frozen_after and frozen_after[0] > 0  # each fork froze and unfroze only what it froze
    assert gc.get_freeze_count() == 0


def test_garbage_of_the_frozen_heap_is_collected_once_the_run_ends() -> None:
    made_before = Node()
    gone = weakref.ref(made_before)
    with frozen_heap():
        assert gc.get_freeze_count() > 0
        del made_before
        gc.collect()
        assert gone() is not None  # frozen: no collection walks it
        made_during = Node()
        during = weakref.ref(made_during)
        del made_during
        gc.collect()
        assert during() is None  # what the run makes is collected as usual
    gc.collect()
    assert gone() is None


def test_a_process_that_froze_its_own_heap_keeps_its_freeze() -> None:
    gc.freeze()
    frozen = gc.get_freeze_count()
    with frozen_heap():
        assert gc.get_freeze_count() == frozen
    assert gc.get_freeze_count() == frozen


def test_the_heap_is_unfrozen_when_the_run_raises() -> None:
    with pytest.raises(KeyboardInterrupt), frozen_heap():
        raise KeyboardInterrupt
    assert gc.get_freeze_count() == 0


def test_no_collection_runs_while_paused_and_its_garbage_is_collected_after() -> None:
    collections: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with collection_paused():
            cycle = Node()
            gone = weakref.ref(cycle)
            del cycle
            kept = [{"n": i} for i in range(100_000)]  # far past every allocation threshold
            assert collections == [] and gone() is not None
        assert gc.isenabled()
        gc.collect()
        assert gone() is None and len(kept) == 100_000
    finally:
        gc.callbacks.remove(count)


def test_a_collector_disabled_by_the_caller_stays_disabled_and_a_raise_reenables_it() -> None:
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), collection_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
