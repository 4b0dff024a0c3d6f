"""Agents racing on one sweep: threads, each opening its own storage, all started at once."""

from __future__ import annotations

import threading

import engine_trainers

import sweeper
from sweeper.engine.agent import AgentSummary


def race(sweep_id: str, url: str, agents: int = 4, timeout_s: float = 300.0) -> list[AgentSummary]:
    """Run ``agents`` local agents (the quadratic trainer) on a sweep until it is done; their summaries."""
    results: list[AgentSummary] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(agents)

    def work() -> None:
        try:
            barrier.wait()
            results.append(
                sweeper.agent(sweep_id, function=engine_trainers.quadratic, storage=url, executor="local")
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout_s)
    assert not errors, errors
    assert len(results) == agents
    return results
