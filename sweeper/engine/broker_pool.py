"""Report brokers kept for the next agent run of this process, on the same Ray.

Each agent run needs a :class:`~sweeper.engine.report_broker.ReportBroker`, and a new actor takes a
worker process from Ray's pool: one a trial would have run in. An agent run that ends on a Ray it
did not start (a notebook's ``sweeper.agent`` calls, a cluster) leaves its broker here instead of
killing it, and the next run of the process takes it (:meth:`ReportBroker.reset` gives it a new
epoch, so a trial of the earlier run still sending is answered at once and never drained). Back-to-back
sweeps then keep every warm worker for their trials: the second of two 16-GPU sweeps started one
fresh worker, a second late, for the broker's sake.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

_logger = logging.getLogger(__name__)

_RESET_TIMEOUT_S = 10.0
"""How long a kept broker may take to answer its reset before a new one is started instead."""

_lock = threading.Lock()
_idle: list[tuple[tuple[str, str], Any]] = []  # (the Ray it lives on, its handle)


def _ray_identity() -> tuple[str, str]:
    """This driver's node and job: a broker lives as long as its job, on the node it is pinned to."""
    import ray

    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


def take() -> tuple[Any, int]:
    """A broker for one agent run, and the run's epoch on it: a kept one if this Ray has one, else new."""
    import ray

    from sweeper.engine.broker import start_broker

    here = _ray_identity()
    while True:
        with _lock:
            kept = next((i for i, (where, _) in enumerate(_idle) if where == here), None)
            if kept is None:
                _idle.clear()  # brokers of a Ray this process left: their handles are dead
                break
            _, broker = _idle.pop(kept)
        try:
            return broker, ray.get(broker.reset.remote(), timeout=_RESET_TIMEOUT_S)
        except Exception:  # gone (killed, its node lost) or stuck: start another
            _logger.debug("a kept report broker did not answer; starting a new one", exc_info=True)
            with contextlib.suppress(Exception):
                ray.kill(broker)
    broker = start_broker()
    return broker, ray.get(broker.reset.remote())


def keep(broker: Any) -> None:
    """Keep a broker whose run ended (its drain stopped) for this process's next run on this Ray."""
    with _lock:
        _idle.append((_ray_identity(), broker))


def discard(broker: Any) -> None:
    """End a broker (its Ray is about to stop, or its drain did not stop)."""
    import ray

    with contextlib.suppress(Exception):  # already gone with a dead cluster
        ray.kill(broker)
