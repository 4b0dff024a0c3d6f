"""Racing on one sweep: threads started at once, each doing its work, every failure reported."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import engine_trainers

import sweeper
from sweeper.engine.agent import AgentSummary

T = TypeVar("T")


def together(work: Callable[[int], T], count: int, timeout_s: float = 300.0) -> list[T]:
    """Run ``work(0)`` ... ``work(count - 1)`` in threads released at once; their results, in the
    order they finished. Fails the test if one raised, or one is still running after ``timeout_s``."""
    results: list[T] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(count)

    def run(index: int) -> None:
        try:
            barrier.wait()
            result = work(index)
            with lock:
                results.append(result)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"a racer was still running after {timeout_s} s"
    assert not errors, errors
    return results


def race(sweep_id: str, url: str, agents: int = 4, timeout_s: float = 300.0) -> list[AgentSummary]:
    """Run ``agents`` local agents (the quadratic trainer) on a sweep until it is done; their summaries."""
    results = together(
        lambda _: sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local"),
        agents,
        timeout_s,
    )
    assert len(results) == agents
    return results
